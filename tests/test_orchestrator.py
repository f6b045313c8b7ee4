"""The orchestrator state machine, driven event by event."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.configs import ConfigSpace
from aragog.errors import SchedulingError
from aragog.orchestrator import EngineView, Orchestrator
from aragog.scheduling.reference import schedule_round
from aragog.workflow import workflow_from_dict


def _chain(tiny_family, num_agents: int = 2) -> ConfigSpace:
    agents = [
        {
            "name": f"s{i}",
            "upstream": [f"s{i - 1}"] if i else [],
            "output": {"source": "trace"},
        }
        for i in range(num_agents)
    ]
    return ConfigSpace.create(
        workflow_from_dict({"name": "chain", "agents": agents}), tiny_family
    )


def _engine(name: str, model: str, saturation: int, slope: float) -> EngineView:
    loads = np.array([0.0, 64.0])
    return EngineView(name, model, saturation, loads, loads * slope)


def _orchestrator(space, engines, beam_width=2):
    return Orchestrator({"chain": space}, engines, beam_width, round_fn=schedule_round)


def test_a_request_runs_stage_by_stage_and_completes_with_its_configuration(
    tiny_family,
):
    space = _chain(tiny_family)
    engines = [_engine("small", "m0", 4, 10.0), _engine("big", "m2", 4, 5.0)]
    orch = _orchestrator(space, engines)
    # Viable: (m0, m2) = 0 + 2*3 = 6 and (m2, m2) = 8.
    orch.add_request("r", "chain", np.array([8, 6]))

    first = orch.schedule()
    assert [(d.agent, d.model) for d in first] == [(0, "m0")]
    assert orch.occupancy.tolist() == [1, 0]
    assert orch.schedule() == []  # stage 1 waits for stage 0

    assert orch.finish_stage("r", 0) is None
    second = orch.schedule()
    assert [(d.agent, d.model) for d in second] == [(1, "m2")]

    done = orch.finish_stage("r", 1)
    assert done is not None
    assert done.config == 6
    assert orch.num_queued == 0
    assert orch.occupancy.tolist() == [0, 0]


def test_a_request_keeps_its_place_in_the_meta_queue_while_a_stage_runs(tiny_family):
    space = _chain(tiny_family)
    engines = [_engine("small", "m0", 1, 10.0)]
    orch = _orchestrator(space, engines)
    everything_on_m0 = np.array([0])
    orch.add_request("first", "chain", everything_on_m0)
    assert [d.request_id for d in orch.schedule()] == ["first"]

    # A later request arrives while the first one's stage runs; the only slot is taken.
    orch.add_request("second", "chain", everything_on_m0)
    assert orch.schedule() == []
    orch.finish_stage("first", 0)

    # The first request's next stage goes before the second request's first stage.
    assert [(d.request_id, d.agent) for d in orch.schedule()] == [("first", 1)]


def test_a_stage_waits_when_its_only_model_has_no_free_slot(tiny_family):
    space = _chain(tiny_family, num_agents=1)
    engines = [_engine("small", "m0", 1, 10.0), _engine("big", "m2", 1, 5.0)]
    orch = _orchestrator(space, engines)
    orch.add_request("a", "chain", np.array([0]))
    orch.add_request("b", "chain", np.array([0]))
    orch.add_request("c", "chain", np.array([2]))

    dispatched = orch.schedule()

    # "b" is skipped (m0 is full after "a"); "c" behind it still runs on m2.
    assert [(d.request_id, d.model) for d in dispatched] == [("a", "m0"), ("c", "m2")]
    assert orch.free_slots().tolist() == [0, 0]


def test_cancel_releases_the_engines_of_running_stages(tiny_family):
    space = _chain(tiny_family)
    engines = [_engine("small", "m0", 2, 10.0)]
    orch = _orchestrator(space, engines)
    orch.add_request("r", "chain", np.array([0]))
    orch.schedule()

    released = orch.cancel("r")

    assert released == [0]
    assert orch.occupancy.tolist() == [0]
    assert orch.num_queued == 0


@pytest.mark.parametrize(
    ("workflow", "request_id", "viable", "message"),
    [
        ("other", "x", [0], "unknown workflow 'other'"),
        ("chain", "dup", [0], "already queued"),
        ("chain", "x", [], "must be non-empty"),
        ("chain", "x", [9], r"ids in \[0, 9\)"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    tiny_family, workflow, request_id, viable, message
):
    orch = _orchestrator(_chain(tiny_family), [_engine("small", "m0", 2, 1.0)])
    orch.add_request("dup", "chain", np.array([0]))

    with pytest.raises(SchedulingError, match=message):
        orch.add_request(request_id, workflow, np.array(viable, dtype=np.int64))


def test_the_compiled_round_and_the_reference_drive_the_same_dispatches(tiny_family):
    space = _chain(tiny_family, num_agents=3)
    engines = [
        _engine("m0#0", "m0", 3, 10.0),
        _engine("m0#1", "m0", 3, 10.0),
        _engine("m1", "m1", 2, 7.0),
        _engine("m2", "m2", 2, 4.0),
    ]
    rng = np.random.default_rng(7)
    logs = []
    for round_fn in (None, schedule_round):
        kwargs = {} if round_fn is None else {"round_fn": round_fn}
        orch = Orchestrator({"chain": space}, engines, 4, **kwargs)
        rng = np.random.default_rng(7)
        log = []
        for step in range(40):
            viable = np.unique(rng.integers(0, space.num_configs, size=5))
            orch.add_request(step, "chain", np.append(viable, space.most_expensive))
            for d in orch.schedule():
                log.append((d.request_id, d.agent, d.engine))
                orch.finish_stage(d.request_id, d.agent)
        logs.append(log)

    assert logs[0] == logs[1]
    assert len(logs[0]) > 40


def test_fresh_engine_views_change_where_the_next_stage_goes(tiny_family):
    space = _chain(tiny_family, num_agents=1)
    small, big = _engine("small", "m0", 4, 10.0), _engine("big", "m2", 4, 5.0)
    orch = _orchestrator(space, [small, big])
    orch.add_request("a", "chain", np.array([0, 2]))
    orch.add_request("b", "chain", np.array([0, 2]))
    assert [d.model for d in orch.schedule()] == ["m0", "m0"]

    # The big engine was measured faster: its curve now gains more per request.
    orch.set_engine_views([small, _engine("big", "m2", 4, 20.0)])
    orch.add_request("c", "chain", np.array([0, 2]))

    assert [d.model for d in orch.schedule()] == ["m2"]


def test_engine_views_must_keep_the_engines_models(tiny_family):
    orch = _orchestrator(_chain(tiny_family), [_engine("small", "m0", 4, 10.0)])

    with pytest.raises(SchedulingError, match="serves 'm0', not 'm1'"):
        orch.set_engine_views([_engine("small", "m1", 4, 10.0)])
    with pytest.raises(SchedulingError, match="expected 1 engines, found 0"):
        orch.set_engine_views([])
