"""Text in, tokens and constraints out: chat templates in a sandbox, tool-call conventions and
JSON-schema grammars. No HTTP here, and no llama context."""
