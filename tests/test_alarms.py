"""The agent's one alarm book: raised once, cleared once, whoever reports; only changes reach the sink."""

from agent.alarms import AlarmBook


def test_each_alarm_is_raised_once_and_cleared_once():
    seen = []
    book = AlarmBook(seen.append)
    assert book.raise_('rig.x', 'first', 'critical', board=None)
    assert not book.event({'id': 'rig.x', 'action': 'raise', 'message': 'again'})   # duplicate
    assert 'rig.x' in book and book.active['rig.x']['message'] == 'first'
    assert not book.clear('rig.y', 'never raised')
    assert book.set('board1.hot', True, 'hot', 'warning')
    assert not book.set('board1.hot', True, 'still hot', 'warning')
    assert book.ids() == ['board1.hot', 'rig.x']
    assert book.set('board1.hot', False, 'cool again')
    assert book.clear('rig.x', 'done')
    assert not book.event({'id': 'rig.z', 'action': 'flip'})
    assert [(e['id'], e['action']) for e in seen] == [
        ('rig.x', 'raise'), ('board1.hot', 'raise'), ('board1.hot', 'clear'), ('rig.x', 'clear')]
    assert book.ids() == []
