# Ultra96-V2 (Avnet): Zynq UltraScale+ xczu3eg-sbva484-1-i. Part and clock come from flow/boards.py.
set af_board_part avnet.com:ultra96v2:part0:1.2
set af_board_files_hint "Avnet bdf repository (github.com/Avnet/bdf) into <Vivado>/data/boards/board_files"
set af_ps_extra {}
