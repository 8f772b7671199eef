"""A user who unfollows the account while queued: WeChat's ``unsubscribe`` push cancels their hand-off, and the
push is answered as it always was (in one worker's memory, and on Redis)."""
import time

from kf_plugin import MessageRouter
from kf_plugin.filters import Event
from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.testing import message_xml

from .lifecycle_apps import OPENID, WANG, rules, session_event, settled

FAREWELL = """\
  - name: farewell
    event: unsubscribe
    reply: "再见"
"""


def unsubscribe(at: float, sender: str = OPENID) -> str:
    """The XML of the ``unsubscribe`` event WeChat pushes when ``sender`` unfollows, stamped ``at``."""
    return message_xml(event="unsubscribe", sender=sender, create_time=int(at))


def test_an_unsubscribe_while_queued_cancels_the_handoff_once(make_worker, state):
    worker = make_worker(**state)
    cancels = worker.heard("cancel")
    worker.says("转人工")
    at = worker.conversation().since + 5
    assert worker.push(unsubscribe(at)).body == "success"
    assert worker.conversation().stage is Stage.BOT
    [record] = worker.handoffs()
    assert (record.outcome, record.ended_at) == (Ending.CANCELLED, int(at))
    [transition] = settled(cancels, 1)
    assert (transition.before.stage, transition.after.stage) == (Stage.QUEUED, Stage.BOT)
    assert transition.record.id == record.id
    assert worker.push(unsubscribe(at)).body == "success"               # WeChat's retry of the same push
    assert worker.push(unsubscribe(at + 1)).body == "success"           # another, with the bot already
    assert len(settled(cancels, 1)) == 1 and worker.handoffs() == [record]


def test_an_unsubscribe_cancels_only_a_queued_users_handoff(make_worker, state):
    """With an agent, WeChat ends the session itself (its close, or the sweep, tells the bot); with the bot
    there is no hand-off to end."""
    queued, served, bot = "oUnfollowQueued", "oUnfollowServed", "oUnfollowBot"
    worker = make_worker(**state)
    for openid in (queued, served):
        worker.says("转人工", sender=openid)
    worker.push(session_event("create", WANG, time.time(), sender=served))
    worker.says("你好", sender=bot)
    at = time.time() + 5
    for openid in (queued, served, bot):
        assert worker.push(unsubscribe(at, openid)).body == "success"
    assert worker.conversation(queued).stage is Stage.BOT
    assert (worker.conversation(served).stage, worker.conversation(served).agent) == (Stage.WITH_AGENT, WANG)
    assert worker.conversation(bot).stage is Stage.BOT
    outcomes = {record.openid: record.outcome for record in worker.handoffs()}
    assert outcomes == {queued: Ending.CANCELLED, served: None}


def test_the_rules_answer_a_queued_users_unsubscribe_as_before(make_worker, state):
    worker = make_worker(rules(more=FAREWELL), **state)
    worker.says("转人工")
    assert worker.push(unsubscribe(time.time())).content == "再见"
    assert worker.handoffs()[0].outcome is Ending.CANCELLED


def test_the_bots_handlers_hear_a_queued_users_unsubscribe_as_before(make_worker, state):
    """Quiet while queued: the handlers do not hear it, as before the cancel; ``while_queued: bot``: they do."""
    heard = []
    router = MessageRouter("bot")
    router.add(Event("unsubscribe"), lambda message: heard.append(message.source))
    quiet = make_worker(router=router, **state)
    quiet.says("转人工", sender="oUnfollowQuiet")
    assert quiet.push(unsubscribe(time.time(), "oUnfollowQuiet")).body == "success"
    talking = make_worker(rules(queue="queue:\n  while_queued: bot\n"), router=router, **state)
    talking.says("转人工", sender="oUnfollowTalking")
    assert talking.push(unsubscribe(time.time(), "oUnfollowTalking")).body == "success"
    assert heard == ["oUnfollowTalking"]
    for worker, openid in ((quiet, "oUnfollowQuiet"), (talking, "oUnfollowTalking")):
        assert worker.conversation(openid).stage is Stage.BOT
