# PYNQ-Z2 (TUL): Zynq-7020 xc7z020clg400-1, 512 MB DDR3. Part and clock come from flow/boards.py.
set af_board_part tul.com.tw:pynq-z2:part0:1.0
set af_board_files_hint "PYNQ-Z2 board files from TUL (pynq-z2 board_files folder into <Vivado>/data/boards/board_files)"
set af_ps_extra {}
