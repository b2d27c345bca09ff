"""`--log-format json`: one JSON object per line, for log shippers."""

from __future__ import annotations

import json
import logging

from raftkv.server.logs import JsonFormatter


def test_json_log_lines_are_single_json_objects() -> None:
    fmt = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord(
            "raftkv.node",
            logging.ERROR,
            __file__,
            1,
            "member %d failed\nnext",
            (3,),
            sys.exc_info(),
        )
    line = fmt.format(rec)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "error"
    assert obj["logger"] == "raftkv.node"
    assert obj["msg"] == "member 3 failed\nnext"
    assert "ValueError: boom" in obj["exc"]
    assert obj["ts"].endswith("Z")
