"""What the journal records from a run's input and tools, and the catalog's filter names."""

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

from deerflow_site.errors import Invalid
from runs.engine.journal import JournalWriter, RunJournal, human_messages, tool_messages
from runs.journal.catalog import CATEGORY_OF, EventCategory, EventType, parse_event_types


@pytest.mark.parametrize(
    "graph_input",
    [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": {"role": "user", "content": "hi"}},
        {"messages": "hi"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    ],
)
def test_human_messages_of_an_input_in_any_form_langgraph_accepts(graph_input: dict) -> None:
    found = human_messages(graph_input)

    assert [(m.type, m.content) for m in found] == [("human", "hi")]


@pytest.mark.parametrize(
    "graph_input", [None, {"steps": 3}, {"messages": 7}, {"messages": [{"bogus": 1}]}, "text"]
)
def test_inputs_without_human_messages_record_none(graph_input: object) -> None:
    assert human_messages(graph_input) == []


def test_tool_results_come_from_a_tool_message_or_a_commands_update() -> None:
    result = ToolMessage("42", tool_call_id="call_1", name="calculator")
    command = Command(update={"messages": [result, AIMessage("not a tool result")]})

    assert tool_messages(result) == [result]
    assert tool_messages(command) == [result]
    assert tool_messages("plain output") == []


def test_every_event_type_has_a_category() -> None:
    assert set(CATEGORY_OF) == set(EventType)
    assert EventType.RUN_CANCEL.category == EventCategory.LIFECYCLE
    assert EventType.LLM_CALL.category == EventCategory.TRACE


def test_event_type_filters_accept_legacy_aliases_and_refuse_unknown_names() -> None:
    assert parse_event_types("human_message, ai_message,tool_message,run.end,ai_message") == [
        "llm.human.input",
        "llm.ai.response",
        "llm.tool.result",
        "run.end",
    ]
    assert parse_event_types("") == []
    with pytest.raises(Invalid) as refused:
        parse_event_types("run.end,whatever")
    assert "event_types" in refused.value.detail


@pytest.mark.django_db
def test_a_nul_character_from_a_model_or_tool_is_journaled_as_a_replacement_character(
    user: object,
) -> None:
    from runs.journal.store import JournalBatch, JournalEntry, record_batch
    from runs.models import RunEvent
    from tests.engine_support import make_thread, pending_run

    run = pending_run(thread=make_thread(user=user), user=user)
    entry = JournalEntry(
        EventType.TOOL_RESULT,
        content={"type": "tool", "content": "a\x00b", "artifact": ["\x00"]},
        metadata={"key\x00": "value"},
    )

    record_batch(thread_id=run.thread_id, run_id=run.pk, batch=JournalBatch(entries=[entry]))

    stored = RunEvent.objects.get(run=run)
    assert stored.content == {"type": "tool", "content": "a\ufffdb", "artifact": ["\ufffd"]}
    assert stored.metadata == {"key\ufffd": "value"}


@pytest.mark.django_db
def test_a_run_whose_state_and_error_hold_a_nul_character_still_ends(user: object) -> None:
    from runs.engine.executor import describe_error
    from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run
    from runs.models import Run
    from tests.engine_support import claim_next, make_thread, pending_run
    from threads.models import Thread

    pending_run(thread=make_thread(user=user, thread_id="nul"), user=user)
    run = claim_next(worker_id="test-worker")
    outcome = RunOutcome(status=Run.Status.ERROR, error=describe_error(ValueError("bad\x00")))
    snapshot = ThreadSnapshot(values={"messages": [{"content": "tool said \x00"}]})

    assert finish_run(run=run, outcome=outcome, snapshot=snapshot)

    assert Run.objects.get(pk=run.pk).error == {"error": "ValueError", "message": "bad\ufffd"}
    thread = Thread.objects.get(pk="nul")
    assert thread.status == Thread.Status.ERROR
    assert thread.values == {"messages": [{"content": "tool said \ufffd"}]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reported", "recorded"),
    [
        ({"input_tokens": 2**70, "output_tokens": 3, "total_tokens": 2**70}, (2**63 - 1, 3)),
        ({"input_tokens": -4, "output_tokens": float("inf"), "total_tokens": 0}, (0, 0)),
        ({"input_tokens": float("nan"), "output_tokens": 7.0, "total_tokens": None}, (0, 7)),
    ],
)
def test_a_models_token_counts_are_recorded_within_the_columns_range(
    user: object, reported: dict, recorded: tuple[int, int]
) -> None:
    # A model (or a fake one) may report any count: the journal takes it as a count its
    # columns hold, so the run's end can write it (int() of infinity raised OverflowError).
    from runs.engine.journal import JournalWriter, RunJournal
    from tests.engine_support import make_thread, pending_run

    writer = JournalWriter(pending_run(thread=make_thread(user=user), user=user))
    message = AIMessage(content="hi")
    message.usage_metadata = reported  # type: ignore[assignment]

    RunJournal(writer)._record_answer(message, "model", 1.0)

    counts = writer._take().usage["model"]
    assert (counts.input_tokens, counts.output_tokens) == recorded
    assert 0 <= counts.total_tokens <= 2**63 - 1


class _ChainCountingJournal(RunJournal):
    """The run journal, counting the chain events langchain_core still hands it."""

    def __init__(self, writer: JournalWriter) -> None:
        super().__init__(writer)
        self.chain_events = 0

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self.chain_events += 1

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self.chain_events += 1


async def test_the_journal_hears_a_graphs_models_and_tools_and_none_of_its_chains() -> None:
    @tool
    def lookup(query: str) -> str:
        """Look a query up."""
        return f"found {query}"

    model = FakeListChatModel(responses=["the answer"])

    async def answer(state: MessagesState) -> dict[str, Any]:
        reply = await model.ainvoke(state["messages"])
        call = {"type": "tool_call", "id": "call_1", "name": "lookup", "args": {"query": "q"}}
        return {"messages": [reply, await lookup.ainvoke(call)]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    graph = builder.compile()
    run = SimpleNamespace(pk=uuid.uuid4(), thread_id="t", kwargs={})
    writer = JournalWriter(run)  # type: ignore[arg-type]
    journal = _ChainCountingJournal(writer)

    await graph.ainvoke({"messages": [("user", "hi")]}, {"callbacks": [journal]})

    recorded = [entry.event_type for entry in (await writer.close()).entries]
    assert recorded == [EventType.AI_RESPONSE, EventType.LLM_CALL, EventType.TOOL_RESULT]
    assert journal.chain_events == 0  # skipped by langchain_core, not called as no-ops
    assert not (journal.ignore_llm or journal.ignore_chat_model or journal.ignore_agent)
