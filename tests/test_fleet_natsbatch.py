"""fleet/natsbatch: the batch framing between site uplinks and consumers, and the batch-id set
that lets a consumer take each batch once from its live and its durable path."""

import pytest

from fleet import natsbatch


def test_batch_round_trip_keeps_order_topics_payloads_and_retain():
    entries = [('hashpilot/v1/site0/r1/telemetry', b'\xa4av\x01cseq\x01', False),
               ('hashpilot/v1/site0/r1/status', b'', True),
               ('hashpilot/v1/s\u00e9/r2/chips', bytes(range(256)) * 20, False)]
    data = natsbatch.encode(entries)
    assert natsbatch.decode(data) == entries
    assert natsbatch.decode(natsbatch.encode([])) == []


@pytest.mark.parametrize('cut', [1, 6, 7, 20, -1])
def test_truncated_batch_is_refused(cut):
    data = natsbatch.encode([('a/b', b'payload', False), ('c/d', b'x' * 50, True)])
    with pytest.raises(ValueError):
        natsbatch.decode(data[:cut] if cut > 0 else data[:cut])


def test_seen_ids_take_each_batch_once_and_forget_the_oldest():
    seen = natsbatch.SeenIds(keep=3)
    assert [seen.add(b) for b in ('a', 'b', 'a', 'c')] == [True, True, False, True]
    assert seen.add('d') is True          # 'a' falls out
    assert seen.add('a') is True and seen.add('d') is False


def test_stream_captures_every_site_subject_r3():
    cfg = natsbatch.stream_config()
    assert cfg.name == natsbatch.STREAM and cfg.num_replicas == 3
    assert cfg.subjects == ['hpd.>'] and natsbatch.subject('site7') == 'hpd.site7'
    assert cfg.duplicate_window == 120
