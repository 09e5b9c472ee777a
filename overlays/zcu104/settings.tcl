# ZCU104 (AMD): Zynq UltraScale+ xczu7ev-ffvc1156-2-e. Part and clock come from flow/boards.py.
set af_board_part xilinx.com:zcu104:part0:1.1
set af_board_files_hint "ships with Vivado (Xilinx board store)"
set af_ps_extra {}
