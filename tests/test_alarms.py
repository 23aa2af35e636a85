"""The agent's one alarm book: raised once, cleared once, whoever reports; only changes leave it.
One book serves the safety supervisor, the control loop and the agent; a tick's alarms leave
after the tick's actions were applied."""

from agent import alarms
from agent.alarms import AlarmBook


def test_each_alarm_is_raised_once_and_cleared_once():
    seen = []
    book = AlarmBook(seen.append)
    assert book.raise_('rig.x', 'critical', 'first', 1.0)
    assert not book.event(alarms.event('rig.x', 'raise', 'critical', 'again'))   # duplicate
    assert 'rig.x' in book and book.active['rig.x']['message'] == 'again'        # numbers current
    assert book.active['rig.x']['since_s'] == 1.0
    assert not book.clear('rig.y', 'never raised')
    assert book.set('board1.hot', True, 'warning', 'hot', 2.0, board=1)
    assert not book.set('board1.hot', True, 'warning', 'still hot', 3.0, board=1)
    assert book.ids() == ['rig.x', 'board1.hot'] and book.ids('board1.') == ['board1.hot']
    assert book.set('board1.hot', False, 'warning', 'cool again', 4.0)
    assert book.clear('rig.x', 'done')
    assert not book.event({'id': 'rig.z', 'action': 'flip'})
    assert [(e['id'], e['action'], e['severity'], e['board']) for e in seen] == [
        ('rig.x', 'raise', 'critical', None), ('board1.hot', 'raise', 'warning', 1),
        ('board1.hot', 'clear', 'info', 1), ('rig.x', 'clear', 'info', None)]
    assert book.ids() == [] and book.drain() == []   # with a sink nothing waits


def test_event_shape_is_the_documented_one():
    ev = alarms.event('board0.hot', 'raise', 'warning', 'hot', 0, 12.5)
    assert ev == {'id': 'board0.hot', 'action': 'raise', 'severity': 'warning', 'message': 'hot',
                  'board': 0, 'now_s': 12.5}


def test_without_sink_changes_queue_until_drained():
    book = AlarmBook()
    book.raise_('a', 'warning', 'on', 0.0)
    book.raise_('a', 'warning', 'on again', 1.0)
    book.clear('a', 'off', 2.0)
    assert [(e['id'], e['action']) for e in book.drain()] == [('a', 'raise'), ('a', 'clear')]
    assert book.drain() == []


def test_held_book_reports_on_release_in_order():
    seen = []
    book = AlarmBook(seen.append)
    book.hold()
    book.hold()
    book.raise_('a', 'warning', 'on')
    book.raise_('b', 'critical', 'on')
    book.release()
    assert seen == [] and book.ids() == ['a', 'b']   # state is current while held
    book.release()
    assert [e['id'] for e in seen] == ['a', 'b']
    book.release()                                    # extra release: harmless
    book.clear('a', 'off')
    assert [e['id'] for e in seen] == ['a', 'b', 'a']


def test_a_raising_sink_loses_no_alarm_and_repeats_none():
    """flush() used to pop before calling the sink: an OSError from the link lost that alarm."""
    seen, fail = [], [True]

    def sink(ev):
        if fail[0] and ev['id'] == 'b':
            raise OSError('link down')
        seen.append((ev['id'], ev['action']))
    book = AlarmBook(sink)
    book.hold()
    book.raise_('a', 'warning', 'on')
    book.raise_('b', 'critical', 'on')
    book.raise_('c', 'warning', 'on')
    try:
        book.release()
        raise AssertionError('the sink error reaches the caller')
    except OSError:
        pass
    assert seen == [('a', 'raise')] and [e['id'] for e in book.pending] == ['b', 'c']
    fail[0] = False
    book.flush()
    assert seen == [('a', 'raise'), ('b', 'raise'), ('c', 'raise')]
    book.flush()
    assert len(seen) == 3


def test_an_alarm_raised_by_the_sink_goes_out_once_after_the_current_one():
    seen = []
    book = AlarmBook()

    def sink(ev):
        seen.append(ev['id'])
        if ev['id'] == 'a':
            book.raise_('link.slow', 'warning', 'sink was slow')
    book.sink = sink
    book.raise_('a', 'warning', 'on')
    assert seen == ['a', 'link.slow'] and book.pending == []


def test_one_book_for_supervisor_and_control_loop_reports_after_apply():
    """Board controller on loop:// (our frames echo back): every reading is garbage, every write
    refused. The supervisor's alarms and the control loop's rig.write_failed land in the same
    book, each once, and leave it only after the tick applied its actions."""
    from agent.control import ControlLoop
    from agent.safety import Supervisor
    from hal import models
    from hal.clock import Clock
    from hal.rig import Rig
    model = models.get('GAMMA')
    rig = Rig(model, ['loop://'], 'loop://', clock=Clock(1.0))
    rig.board.timeout_s, rig.board.retries = 0.05, 0
    seen = []
    book = AlarmBook(lambda ev: seen.append((ev, ctl.ticks, list(ctl.write_failures))))
    sup = Supervisor(model, alarms=book)
    ctl = ControlLoop(rig, sup, Clock(1.0), on_event=book.event)
    try:
        for t in range(3):
            actions = ctl.tick(float(t))
            assert actions['events'] == []          # the sink has them, not the caller
        ids = [ev['id'] for ev, _, _ in seen]
        assert 'rig.write_failed' in ids and len(ids) == len(set(ids)), ids
        assert any(i.startswith('board0.') for i in ids), ids   # the supervisor's own
        for ev, tick, failures in seen:
            assert failures, '%s reported before the tick applied its actions' % ev['id']
        assert set(ids) == set(book.ids())
        assert 'rig.write_failed' in sup.get_status()['alarms']   # one view of what is active
    finally:
        rig.close()
