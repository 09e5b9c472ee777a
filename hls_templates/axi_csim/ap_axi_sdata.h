// C-simulation stand-in for Vitis HLS's ap_axi_sdata.h (hls4ml's ap_types do not ship it).
// Used ONLY by the host emulation build (flow/driver/emulation.py puts this folder on the include
// path); synthesis uses the real header from the Vitis installation.
#ifndef ADDERFLOW_CSIM_AP_AXI_SDATA_H
#define ADDERFLOW_CSIM_AP_AXI_SDATA_H
#include "ap_int.h"

template <int D, int U, int TI, int TD> struct ap_axiu {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<(U > 0) ? U : 1> user;
    ap_uint<1> last;
    ap_uint<(TI > 0) ? TI : 1> id;
    ap_uint<(TD > 0) ? TD : 1> dest;
};
#endif
