# A dry-run stand-in for the Vivado commands the overlay scripts use, for plain tclsh (no Vivado).
# flow/board/bitstream.py sources this, then the generated build_bitstream.tcl. It checks what can
# be checked without Vivado:
#   * the whole script parses and runs in Tcl, for the chosen board's branch;
#   * every command is one this stub knows (a typo'd Vivado command fails: `unknown` is strict);
#   * every cell pin/interface the block design names exists: our HLS IP's from the IP description
#     derived from the wrapper's C++ pragmas (stub_ip_* variables, set by the caller), Xilinx IPs'
#     from the product guides' port names (PG021 axi_dma, PG059 axi_interconnect, PG247 smartconnect,
#     PG164 proc_sys_reset, UG585/PG082 processing_system7, PG201 zynq_ultra_ps_e, xlconcat);
#   * interface connections pair a master with a slave, and every port of our IP gets connected;
#   * the IP's VLNV used by create_bd_cell is the exported one.
# What it cannot check: IP parameter values, synthesis, place and route, timing (needs Vivado).

set stub_log {}
array set stub_cells {}
array set stub_connected {}
set stub_counts [dict create cells 0 intf_nets 0 nets 0]

proc stub_note {args} { lappend ::stub_log [join $args " "] }

# Pins of the Xilinx IPs (name -> {interface pins} {plain pins}); role of an interface from its name.
array set stub_xilinx_intf {
    processing_system7 {M_AXI_GP0 S_AXI_HP0 FIXED_IO DDR}
    zynq_ultra_ps_e    {M_AXI_HPM0_FPD S_AXI_HP0_FPD}
    axi_dma            {S_AXI_LITE M_AXI_MM2S M_AXI_S2MM M_AXIS_MM2S S_AXIS_S2MM}
    axi_interconnect   {S00_AXI M00_AXI M01_AXI}
    smartconnect       {S00_AXI S01_AXI M00_AXI}
    proc_sys_reset     {}
    xlconcat           {}
}
array set stub_xilinx_pins {
    processing_system7 {FCLK_CLK0 FCLK_RESET0_N M_AXI_GP0_ACLK S_AXI_HP0_ACLK IRQ_F2P}
    zynq_ultra_ps_e    {pl_clk0 pl_resetn0 maxihpm0_fpd_aclk saxihp0_fpd_aclk pl_ps_irq0}
    axi_dma            {s_axi_lite_aclk m_axi_mm2s_aclk m_axi_s2mm_aclk axi_resetn mm2s_introut s2mm_introut}
    axi_interconnect   {ACLK ARESETN S00_ACLK S00_ARESETN M00_ACLK M00_ARESETN M01_ACLK M01_ARESETN}
    smartconnect       {aclk aresetn}
    proc_sys_reset     {slowest_sync_clk ext_reset_in interconnect_aresetn peripheral_aresetn peripheral_reset}
    xlconcat           {In0 In1 In2 dout}
}

proc stub_ipname {vlnv} { return [lindex [split $vlnv :] 2] }

proc stub_pin {kind path} {
    set parts [split $path /]
    if {[llength $parts] != 2} { error "stub: pin path '$path' is not <cell>/<pin>" }
    lassign $parts cell pin
    if {![info exists ::stub_cells($cell)]} { error "block design names pin $path of cell '$cell' which was never created" }
    set vlnv $::stub_cells($cell)
    if {$vlnv eq $::stub_ip_vlnv} {
        set known [expr {$kind eq "intf" ? [dict keys $::stub_ip_intf] : $::stub_ip_ports}]
        if {$pin ni $known} {
            error "block design names $kind pin '$pin' on $cell, but the exported HLS IP has only: [join $known {, }]"
        }
    } else {
        set name [stub_ipname $vlnv]
        set table [expr {$kind eq "intf" ? "::stub_xilinx_intf" : "::stub_xilinx_pins"}]
        if {![info exists ${table}($name)]} { error "stub: no pin table for IP $name" }
        if {$pin ni [set ${table}($name)]} {
            error "block design names $kind pin '$pin' on $cell ($name), which has no such pin"
        }
    }
    return $path
}

proc stub_role {path} {
    lassign [split $path /] cell pin
    if {$::stub_cells($cell) eq $::stub_ip_vlnv} { return [dict get $::stub_ip_intf $pin] }
    return [expr {[string match M* $pin] ? "master" : "slave"}]
}

# ---- project / IP catalog ---------------------------------------------------------------------
proc create_project {args} {
    set ::stub_project_dir [lindex $args end-2]
    file mkdir $::stub_project_dir
    stub_note create_project {*}$args
}
proc current_project {args} { return project_1 }
proc current_fileset {args} { return sources_1 }
proc get_board_parts {args} { return [lindex $args end] }
proc set_property {args} { stub_note set_property {*}$args }
proc update_ip_catalog {args} {}
proc get_ipdefs {args} {
    set i [lsearch $args -filter]
    if {$i >= 0} {
        regexp {VLNV =~ (\S+):\*} [lindex $args [expr {$i + 1}]] -> prefix
        return [list ${prefix}:9.9]
    }
    set vlnv [lindex $args end]
    return [expr {$vlnv eq $::stub_ip_vlnv ? [list $vlnv] : {}}]
}
proc get_property {name obj} {
    switch -- $name {
        PROGRESS { return "100%" }
        DIRECTORY { return [file join $::stub_project_dir stub.runs impl_1] }
        SLACK { return 0.250 }
        default { return "" }
    }
}

# ---- block design -------------------------------------------------------------------------------
proc create_bd_design {name} { set ::stub_bd $name }
proc create_bd_cell {args} {
    set vlnv [lindex $args [expr {[lsearch $args -vlnv] + 1}]]
    set name [lindex $args end]
    if {[info exists ::stub_cells($name)]} { error "cell $name created twice" }
    if {[string match *adderflow* $vlnv] && $vlnv ne $::stub_ip_vlnv} {
        error "block design instantiates $vlnv but the exported IP is $::stub_ip_vlnv"
    }
    set ::stub_cells($name) $vlnv
    dict incr ::stub_counts cells
    return $name
}
proc get_bd_cells {args} { return [lindex $args end] }
proc get_bd_pins {path} { return [stub_pin pin $path] }
proc get_bd_intf_pins {path} { return [stub_pin intf $path] }
proc apply_bd_automation {args} { stub_note apply_bd_automation {*}$args }
proc connect_bd_intf_net {a b} {
    set roles [lsort [list [stub_role $a] [stub_role $b]]]
    if {$roles ne {master slave}} { error "interface net $a -- $b does not join a master to a slave ($roles)" }
    foreach p [list $a $b] {
        if {[info exists ::stub_connected($p)]} { error "interface pin $p connected twice" }
        set ::stub_connected($p) 1
    }
    dict incr ::stub_counts intf_nets
}
proc connect_bd_net {args} {
    if {[llength $args] < 2} { error "connect_bd_net needs at least two pins: $args" }
    foreach p $args {
        if {[info exists ::stub_connected($p)]} { error "pin $p driven by two nets" }
        set ::stub_connected($p) 1
    }
    dict incr ::stub_counts nets
}
proc assign_bd_address {args} {}
proc validate_bd_design {args} {
    # every port of our IP must be wired (a dangling AXI port would make a dead overlay)
    foreach {cell vlnv} [array get ::stub_cells] {
        if {$vlnv ne $::stub_ip_vlnv} { continue }
        foreach pin [concat [dict keys $::stub_ip_intf] $::stub_ip_ports] {
            if {![info exists ::stub_connected($cell/$pin)]} { error "HLS IP port $cell/$pin is left unconnected" }
        }
    }
}
proc save_bd_design {args} {}
proc get_files {args} { return [lindex $args end] }
proc make_wrapper {args} { return [file join $::stub_project_dir ${::stub_bd}_wrapper.v] }

# ---- implementation: leave the files a real run leaves, so the script's tail runs too -----------
proc launch_runs {args} {
    set run [file join $::stub_project_dir stub.runs impl_1]
    file mkdir $run
    set f [open [file join $run ${::stub_bd}_wrapper.bit] w]; puts $f stub; close $f
    set hh [file join $::stub_project_dir stub.gen sources_1 bd $::stub_bd hw_handoff]
    file mkdir $hh
    set f [open [file join $hh ${::stub_bd}.hwh] w]; puts $f "<stub/>"; close $f
}
proc wait_on_run {args} {}
proc get_runs {args} { return [lindex $args end] }
proc open_run {args} {}
proc report_utilization {args} {}
proc report_timing_summary {args} {}
proc get_timing_paths {args} { return path0 }
proc write_hw_platform {args} {}

# ---- IP packaging of the register-transfer design (IMPL=rtl, overlays/common/package_rtl_ip.tcl) ---------
# Checked: every file added exists; the packaged top and the VLNV it yields are the ones the block design uses;
# the stream interfaces inferred are named as the block design connects them (s_axis / m_axis).
proc update_compile_order {args} {}
proc close_project {args} {}
proc add_files {args} {
    foreach f [lindex $args end] {
        if {[string match *_wrapper.v $f]} { continue }
        if {![file isfile $f]} { error "add_files: $f does not exist" }
        lappend ::stub_added_files $f
    }
}
namespace eval ipx {}
proc ipx::current_core {args} { return core0 }
proc ipx::package_project {args} {
    set root [lindex $args [expr {[lsearch $args -root_dir] + 1}]]
    set v [lindex $args [expr {[lsearch $args -vendor] + 1}]]
    set l [lindex $args [expr {[lsearch $args -library] + 1}]]
    set ::stub_pkg_root $root
    set ::stub_pkg_vl "$v:$l"
}
proc ipx::infer_bus_interfaces {args} {}
proc ipx::infer_bus_interface {args} {}
proc ipx::get_bus_interfaces {args} { return [lindex $args 0] }
proc ipx::add_bus_parameter {args} { return param0 }
proc ipx::associate_bus_interfaces {args} {}
proc ipx::create_xgui_files {args} {}
proc ipx::update_checksums {args} {}
proc ipx::check_integrity {args} {}
proc ipx::save_core {args} {
    file mkdir $::stub_pkg_root
    set f [open [file join $::stub_pkg_root component.xml] w]; puts $f "<stub/>"; close $f
}

# Anything else is a command this dry run does not know: fail instead of tclsh's exec fallback.
proc unknown {args} { error "unknown command '[lindex $args 0]' (not a Tcl or known Vivado command)" }
