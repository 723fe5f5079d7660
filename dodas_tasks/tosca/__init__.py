"""TOSCA: the DODAS type library and the compiler from templates to Plans."""

import threading

# tosca-parser collects errors in process-global state (ExceptionCollector): one use at a time per process.
TOSCA_PARSER_LOCK = threading.RLock()
