"""cocotb parts for the SORE and the weight-update engine, run through ``cocotb_tools.runner``.

``runner.run_unit`` builds one generated unit under a simulator and runs a cocotb test
module on it; ``codec`` packs and unpacks stream payloads with the RTL's own
``amaranth.lib.data`` layouts; ``timing`` adds per-beat cycle stamps to the stream monitor
of :mod:`nmsat.rtl.tb.cocotb_parts`; ``sore_tb`` and ``wu_tb`` are the test modules
(driver, monitor, reference model, in-order checker, one assertion each).
"""
