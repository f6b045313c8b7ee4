"""Type stub of aragog's compiled scheduling core (csrc/register_round.cpp).

Use it through :func:`aragog.scheduling.round.run_round`, which turns its ``ValueError``
into :class:`aragog.errors.SchedulingError`.
"""

import numpy as np
import numpy.typing as npt

def schedule_round(
    agent_offsets: npt.NDArray[np.int32],
    candidate_offsets: npt.NDArray[np.int32],
    candidate_models: npt.NDArray[np.int32],
    request_workflow: npt.NDArray[np.int32],
    viable_offsets: npt.NDArray[np.int64],
    viable_configs: npt.NDArray[np.int64],
    item_request: npt.NDArray[np.int32],
    item_agent: npt.NDArray[np.int32],
    item_depth: npt.NDArray[np.int32],
    engine_model: npt.NDArray[np.int32],
    engine_free_slots: npt.NDArray[np.int32],
    engine_load: npt.NDArray[np.int32],
    curve_offsets: npt.NDArray[np.int32],
    curve_load: npt.NDArray[np.float64],
    curve_throughput: npt.NDArray[np.float64],
    beam_width: int,
) -> tuple[npt.NDArray[np.int32], float, float]:
    """Run one scheduling round; the arguments are RoundInput's fields in order.

    Arrays must be 1-D, C-contiguous and of exactly the dtype shown (no casting).
    Returns (item_engine, utilization_gain, flexibility), bit-identical to
    ``aragog.scheduling.reference.schedule_round``.

    Raises:
        ValueError: a wrong type, dtype or shape, or arrays that break the round's
            contract; the message names the argument.
    """

def narrow_viable_set(
    viable: npt.NDArray[np.int64], stride: int, radix: int, digit: int
) -> npt.NDArray[np.int64]:
    """The configurations of ``viable`` whose digit ``(c // stride) % radix`` is
    ``digit``, in order.

    Raises:
        ValueError: ``viable`` is not a 1-D C-contiguous int64 array, an integer does
            not fit in 64 bits, or ``stride`` or ``radix`` is below 1.
    """
