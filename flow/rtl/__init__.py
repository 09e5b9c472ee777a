"""The register-transfer realisation of the generated design (issue 11): from a QNet, its reuse factors and
the schedule (flow/hls/schedule.py) to Verilog wrappers around the hand-written rtl/ library, ROM files,
a manifest, and a Verilator harness that co-simulates it against the golden model."""
