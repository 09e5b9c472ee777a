# IMPL=rtl: package the register-transfer design (BUILD/rtl, written by `adderflow rtl`) as Vivado IP, in
# the Vivado session that then builds the same block design as the HLS path (block_design.tcl).
# Sourced by build_bitstream.tcl after params.tcl, which sets (flow/board/bitstream.py, from BUILD/rtl/manifest.json):
#   af_part af_rtl_dir af_rtl_files af_rtl_data_files af_rtl_top af_ip_repo af_ip_vendor af_ip_library
#   af_ip_version af_rtl_project_dir
#
# Interfaces: s_axis_* / m_axis_* become AXI4-Stream s_axis / m_axis (ipx::infer_bus_interfaces finds them
# by the AMBA port-name suffixes), clk the clock of both, rst an ACTIVE_HIGH reset. The remaining top ports
# (status, fifo_count, in/out valid/ready) are the harness's observation ports: left unconnected in the block
# design (outputs), Vivado trims their logic.

create_project -force af_rtl_ip $af_rtl_project_dir -part $af_part
set af_src {}
foreach f $af_rtl_files { lappend af_src [file join $af_rtl_dir $f] }
add_files -norecurse $af_src
if {[llength $af_rtl_data_files]} {
    # $readmemh ROMs: added to the project so synthesis of the packaged IP finds them; the Verilog names
    # them relative to BUILD/rtl, the folder the IP files are imported from
    set af_data {}
    foreach f $af_rtl_data_files { lappend af_data [file join $af_rtl_dir $f] }
    add_files -norecurse $af_data
    set_property file_type {Memory Initialization Files} [get_files $af_data]
}
set_property top $af_rtl_top [current_fileset]
update_compile_order -fileset sources_1

ipx::package_project -root_dir [file join $af_ip_repo $af_rtl_top] -vendor $af_ip_vendor -library $af_ip_library \
    -taxonomy /UserIP -import_files -set_current true
set af_core [ipx::current_core]
set_property version $af_ip_version $af_core
ipx::infer_bus_interfaces xilinx.com:interface:axis_rtl:1.0 $af_core
ipx::infer_bus_interface clk xilinx.com:signal:clock_rtl:1.0 $af_core
ipx::infer_bus_interface rst xilinx.com:signal:reset_rtl:1.0 $af_core
set_property value ACTIVE_HIGH [ipx::add_bus_parameter POLARITY [ipx::get_bus_interfaces rst -of_objects $af_core]]
ipx::associate_bus_interfaces -busif s_axis -clock clk $af_core
ipx::associate_bus_interfaces -busif m_axis -clock clk $af_core
ipx::associate_bus_interfaces -clock clk -reset rst $af_core
ipx::create_xgui_files $af_core
ipx::update_checksums $af_core
ipx::check_integrity $af_core
ipx::save_core $af_core
close_project
