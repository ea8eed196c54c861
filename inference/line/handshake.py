"""What a PLC is told about a part, whichever protocol carries it (Modbus registers or OPC UA
variables): the verdict, the defect code, the fail-safe and error bits (docs/plc.md)."""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass

from defectlens.errors import DefectLensError
from defectlens.inference.engine_registry import EngineRegistry
from defectlens.inference.line.parts import LineAnswer
from defectlens.inference.postprocess import defect_code
from defectlens.prediction import Verdict
from defectlens.result import InspectionResult

log = logging.getLogger(__name__)

# DEFECT CODE values (the same on Modbus and OPC UA)
NO_DEFECT, DEFECT, CODE_DEADLINE, CODE_SOURCE, CODE_ERROR = 0, 1, 100, 101, 102
_FAIL_SAFE_CODES = {"deadline": CODE_DEADLINE, "source": CODE_SOURCE, "error": CODE_ERROR}


@dataclass(frozen=True)
class PlcAnswer:
    """One answered trigger, as the PLC reads it."""

    verdict: Verdict | None
    """None when nothing was stored (the service stopped, a bug): the ERROR bit is set."""
    defect_code: int
    fail_safe: bool
    score: float
    result_id: str | None

    @property
    def error(self) -> bool:
        return self.verdict is None


def class_code(registry: EngineRegistry | None, station: str, result: InspectionResult) -> int:
    """The strongest defect's class code (`postprocess.defect_code`) in the card of the
    model that inspected the part; DEFECT when that model no longer serves the station."""
    if registry is None or not result.defects:
        return DEFECT
    try:
        card = registry.get(station).card
    except DefectLensError:
        return DEFECT
    if card.version != result.model.version or card.name != result.model.name:
        return DEFECT
    return defect_code(card, result.defects[0].class_)


def plc_answer(
    station: str,
    done: concurrent.futures.Future[LineAnswer],
    registry: EngineRegistry | None = None,
) -> PlcAnswer:
    """The answer to a trigger whose future `done` has completed; with the `registry`, a
    defect's code is its class's (`class_code`), else DEFECT."""
    try:
        answer = done.result()
    except BaseException as error:  # no stored result: the PLC sees ERROR, no verdict
        log.error(
            "station %s: trigger not answered: %s", station, error, extra={"station": station}
        )
        return PlcAnswer(None, CODE_ERROR, False, 0.0, None)
    result = answer.result
    if answer.fail_safe is not None:
        code = _FAIL_SAFE_CODES[answer.fail_safe]
    else:
        code = class_code(registry, station, result) if result.defects else NO_DEFECT
    return PlcAnswer(
        result.verdict, code, answer.fail_safe is not None, result.score, result.result_id
    )
