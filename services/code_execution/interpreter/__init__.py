"""One session's interpreter, as it runs inside its bubblewrap sandbox.

Standard library only, and no imports outside this package: the sandbox binds this folder read-only
at ``/sandbox/fllm_interpreter`` and nothing else of the project. The executor imports ``protocol``
(framing) and ``launcher`` (the bwrap command line) from here too.

- ``protocol``: length-prefixed JSON frames over two pipes (``jsonc``: json's C accelerator, without ``json``);
- ``sandbox``: what the process does to itself before any code runs (uid, rlimits, descriptors);
- ``interpreter``: the exec loop: cells, output capture, results and named results (``results``), the cells'
  sources for tracebacks (``sources``);
- ``launcher``: the bwrap command line that starts one sandboxed interpreter.
"""
