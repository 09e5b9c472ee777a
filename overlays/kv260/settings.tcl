# Kria KV260 (AMD): K26 SOM xck26-sfvc784-2LV-c. Part and clock come from flow/boards.py.
# The SOM board part; the carrier connector is not needed for a PS + PL-only overlay.
set af_board_part xilinx.com:kv260_som:part0:1.4
set af_board_files_hint "Xilinx board store (Vivado > Tools > Board store, or xhub) kv260_som"
set af_ps_extra {}
