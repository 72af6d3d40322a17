"""Tool calls the way each model family writes them.

One module per family (how its template is recognised, how its output is read, the syntaxes
its calls are written in: forced by ``prompt.toolgrammar``, written into history by
``prompt.toolhistory``), ``registry`` to pick one, ``scan`` for the shared reading machinery, and
``events`` for what a parser emits (dialect-neutral: content, reasoning, call start / argument
pieces / call end).

Bad output never raises:

- unbalanced markup (an opened call never closed) at the end of the output is a call with the
  arguments written so far (``Call.complete`` False; ``CallEnd(complete=False)``);
- arguments that are not valid JSON are passed on as written (the raw text);
- a call to an undeclared tool inside a family's call markup is still a call, under the name
  the model wrote (the client sees what the model wanted); a bare JSON object (Hermes, Llama 3
  without markup) is a call only when it names a declared tool, else it is content;
- a call block whose name cannot be read at all is dropped, as is markup left over after
  complete calls (the start of another call cut by ``max_tokens``).
"""

from llmserve.prompt.toolformats.events import (
    Call,
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    Snapshot,
    ToolEvent,
    ToolParser,
)
from llmserve.prompt.toolformats.family import (
    ARGUMENTS,
    DSML_ARGS,
    DSML_V4_ARGS,
    GLM_ARGS,
    GLM_COMPACT_ARGS,
    ID,
    INDEX,
    JSON_ARGS,
    NAME,
    OBJECT,
    PY_ARGS,
    XML_ARGS,
    Family,
    Forced,
)
from llmserve.prompt.toolformats.registry import (
    NAMES,
    family,
    recognise,
    stream_parser,
    template_syntax,
)
from llmserve.prompt.toolformats.writing import write_calls

__all__ = [
    "ARGUMENTS",
    "DSML_ARGS",
    "DSML_V4_ARGS",
    "GLM_ARGS",
    "GLM_COMPACT_ARGS",
    "ID",
    "INDEX",
    "JSON_ARGS",
    "NAME",
    "NAMES",
    "OBJECT",
    "PY_ARGS",
    "XML_ARGS",
    "Call",
    "CallArguments",
    "CallEnd",
    "CallStart",
    "Content",
    "Family",
    "Forced",
    "Reasoning",
    "Snapshot",
    "ToolEvent",
    "ToolParser",
    "family",
    "recognise",
    "stream_parser",
    "template_syntax",
    "write_calls",
]
