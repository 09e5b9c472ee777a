// Test bench of the accelerator top (adderflow_top) for Vitis HLS csim and RTL co-simulation: the IP is
// tested as the board drives it, through its AXI4-Stream words and its n_images/status registers, not
// the bare network function. build_prj.tcl is patched to use it (flow.board.axi_top.write_axi_top);
// tests/test_axi_top.py compiles and runs it with g++.
//
// Reads tb_data/tb_input_features.dat (one image per line: the network input integers in H, W, C order)
// and tb_data/tb_output_predictions.dat (the golden integer logits, one image per line), packs ALL the
// images into words as flow/driver/packing.py does (constants from adderflow_axi_top.h), TLAST on the
// last word, and calls adderflow_top ONCE with n_images = all of them. Checks: status == 0, exactly
// n_images * OUT_WORDS output beats with TLAST only on the last, every logit equal to the golden one.
// Writes the logits, one image per line, to tb_data/csim_results.log (tb_data/rtl_cosim_results.log
// with RTL_SIM) for build_prj.tcl's csim/cosim comparison. Exit status 0 only when everything holds.
//
// Copied verbatim into <hls_prj>/adderflow_axi_tb.cpp by flow.board.axi_top.write_axi_top.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "firmware/adderflow_axi_top.h"

using namespace adderflow;

typedef std::vector<std::vector<long long> > rows_t;

// One row per non-empty line; every row must hold `width` integers. Returns false (after saying why) if not.
static bool read_rows(const char *path, unsigned width, rows_t &rows) {
    std::ifstream f(path);
    if (!f.is_open()) {
        std::cout << "ERROR: cannot open " << path << std::endl;
        return false;
    }
    std::string line;
    unsigned line_no = 0;
    while (std::getline(f, line)) {
        line_no++;
        std::istringstream s(line);
        std::vector<long long> row;
        std::string tok;
        while (s >> tok) {
            char *end = NULL;
            long long v = std::strtoll(tok.c_str(), &end, 10);
            if (end == tok.c_str() || *end != '\0') {
                std::cout << "ERROR: " << path << " line " << line_no << ": '" << tok << "' is not an integer"
                          << std::endl;
                return false;
            }
            row.push_back(v);
        }
        if (row.empty()) continue;
        if (row.size() != width) {
            std::cout << "ERROR: " << path << " line " << line_no << ": " << row.size() << " values, the network has "
                      << width << std::endl;
            return false;
        }
        rows.push_back(row);
    }
    return true;
}

int main() {
#ifdef RTL_SIM
    const char *results_log = "tb_data/rtl_cosim_results.log";
#else
    const char *results_log = "tb_data/csim_results.log";
#endif
    rows_t inputs, golden;
    if (!read_rows("tb_data/tb_input_features.dat", IN_VALUES, inputs) ||
        !read_rows("tb_data/tb_output_predictions.dat", OUT_VALUES, golden))
        return 2;
    if (inputs.empty() || inputs.size() != golden.size()) {
        std::cout << "ERROR: tb_data holds " << inputs.size() << " input images and " << golden.size()
                  << " golden outputs (need the same number, at least one)" << std::endl;
        return 2;
    }
    const unsigned n_images = inputs.size();
    const long long in_lo = IN_SIGNED ? -(1LL << (IN_VALUE_BITS - 1)) : 0;
    const long long in_hi = IN_SIGNED ? (1LL << (IN_VALUE_BITS - 1)) - 1 : (1LL << IN_VALUE_BITS) - 1;

    // The whole batch as one DMA transfer: lane 0 in the low bits, each image on fresh words.
    hls::stream<word_t> in_stream("tb_in"), out_stream("tb_out");
    for (unsigned img = 0; img < n_images; img++) {
        for (unsigned w = 0; w < IN_WORDS; w++) {
            word_data_t word = 0;
            for (unsigned lane = 0; lane < IN_LANES; lane++) {
                const unsigned k = w * IN_LANES + lane;
                if (k >= IN_VALUES) break;
                const long long v = inputs[img][k];
                if (v < in_lo || v > in_hi) {
                    std::cout << "ERROR: input image " << img << " value " << k << " = " << v << " is outside ["
                              << in_lo << ", " << in_hi << "]" << std::endl;
                    return 2;
                }
                word |= word_data_t(in_lane_t(v)) << (lane * IN_LANE_BITS);   // two's complement at lane width
            }
            in_stream.write(make_beat(word, (img == n_images - 1) && (w == IN_WORDS - 1)));
        }
    }

    unsigned status = 0;
    adderflow_top(in_stream, out_stream, n_images, status);

    int errors = 0;
    if (status != 0) {
        std::cout << "ERROR: status register " << status << " (bit 0: TLAST before the last word, bit 1: no TLAST "
                  << "on the last word)" << std::endl;
        errors++;
    }
    std::vector<word_t> beats;
    while (!out_stream.empty()) beats.push_back(out_stream.read());
    const unsigned long want_beats = (unsigned long)n_images * OUT_WORDS;
    if (beats.size() != want_beats) {
        std::cout << "ERROR: " << beats.size() << " output beats, expected " << want_beats << std::endl;
        errors++;
    }
    for (unsigned long b = 0; b < beats.size(); b++) {
        const bool want_last = (b == want_beats - 1);
        if ((bool)beats[b].last != want_last) {
            std::cout << "ERROR: output beat " << b << (want_last ? " lacks TLAST" : " has TLAST") << std::endl;
            errors++;
            break;
        }
    }

    std::ofstream fout(results_log);
    unsigned long mismatches = 0;
    for (unsigned img = 0; img < n_images; img++) {
        for (unsigned k = 0; k < OUT_VALUES; k++) {
            const unsigned long b = (unsigned long)img * OUT_WORDS + k / OUT_LANES;
            long long v = 0;   // a missing beat reads as zeros (already counted as an error above)
            if (b < beats.size()) {
                out_lane_t bits = beats[b].data >> ((k % OUT_LANES) * OUT_LANE_BITS);   // keeps the low lane bits
                v = OUT_SIGNED ? (long long)ap_int<OUT_LANE_BITS>(bits).to_int64() : (long long)bits.to_uint64();
            }
            fout << v << " ";
            if (v != golden[img][k]) {
                if (mismatches < 10)
                    std::cout << "image " << img << " logit " << k << ": got " << v << ", expected " << golden[img][k]
                              << std::endl;
                mismatches++;
            }
        }
        fout << std::endl;   // one image per line, as hls4ml's myproject_test.cpp writes it
    }
    fout.close();
    std::cout << mismatches << " mismatches (" << n_images << " images, " << OUT_VALUES << " logits each, one call)"
              << std::endl;
    std::cout << "INFO: Saved inference results to file: " << results_log << std::endl;
    return (errors || mismatches) ? 1 : 0;
}
