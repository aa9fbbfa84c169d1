"""Amaranth RTL of the SAT core, Verilog generation, synthesis reports and cocotb verification."""
