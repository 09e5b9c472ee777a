// Verilator harness of a generated af_top (flow/rtl/harness.py builds and runs it).
//
// Drives s_axis with the packed DMA words of N images back to back (optional random gaps: s_axis_tvalid
// held low with probability --gap), takes m_axis with optional random back-pressure (m_axis_tready low
// with probability --bp), and writes the output words. Per image it records the cycle its first input
// word was accepted and the cycle its last output word was; per stream FIFO the high-water mark of
// `count`. A run with no handshake on any stream, nor on either AXI port, for --timeout cycles is a
// deadlock: the harness names the stalled streams (FIFO full, or valid && !ready at its output) and
// exits 3. Statistics go to --stats as JSON. af_harness_cfg.h (generated beside af_top.v) gives the
// stream names, depths and the offsets of their counts in the `fifo_count` bus.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "Vaf_top.h"
#include "verilated.h"
#include "af_harness_cfg.h"

// One bit / field of a Verilator port, whatever its C++ type (scalars up to 64 bits, VlWide above).
static inline uint64_t bit_of(uint64_t v, int i) { return (v >> i) & 1u; }
template <std::size_t N> static inline uint64_t bit_of(const VlWide<N> &v, int i) { return (v[i / 32] >> (i % 32)) & 1u; }
template <class T> static inline uint64_t field_of(const T &v, int off, int bits) {
    uint64_t x = 0;
    for (int b = 0; b < bits; b++) x |= bit_of(v, off + b) << b;
    return x;
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return dflt;
}

int main(int argc, char **argv) {
    const char *in_path = arg(argc, argv, "--in", nullptr), *out_path = arg(argc, argv, "--out", nullptr);
    const char *stats_path = arg(argc, argv, "--stats", nullptr);
    if (!in_path || !out_path || !stats_path) {
        fprintf(stderr, "usage: %s --in WORDS --out WORDS --stats JSON [--images N --gap P --bp P --seed S --timeout C --progress K]\n", argv[0]);
        return 2;
    }
    const long n_images = atol(arg(argc, argv, "--images", "1"));
    const double gap = atof(arg(argc, argv, "--gap", "0")), bp = atof(arg(argc, argv, "--bp", "0"));
    const long timeout = atol(arg(argc, argv, "--timeout", "100000"));
    const long progress = atol(arg(argc, argv, "--progress", "0"));
    std::mt19937_64 rng(strtoull(arg(argc, argv, "--seed", "0"), nullptr, 10));
    std::uniform_real_distribution<double> uni(0.0, 1.0);

    const long total_in = n_images * AF_WORDS_IN, total_out = n_images * AF_WORDS_OUT;
    std::vector<uint64_t> words(total_in), outw;
    outw.reserve(total_out);
    FILE *f = fopen(in_path, "rb");
    if (!f || fread(words.data(), 8, total_in, f) != (size_t)total_in) {
        fprintf(stderr, "%s: cannot read %ld input words\n", in_path, total_in);
        return 2;
    }
    fclose(f);

    Verilated::commandArgs(argc, argv);
    Vaf_top *top = new Vaf_top;
    std::vector<long> first_in(n_images, -1), last_out(n_images, -1);
    std::vector<int> high(AF_N_STREAMS, 0);
    long tlast_errors = 0;

    top->clk = 0;
    top->rst = 1;
    top->s_axis_tvalid = 0;
    top->m_axis_tready = 0;
    for (int i = 0; i < 4; i++) {  // a few reset cycles
        top->clk = 0; top->eval();
        top->clk = 1; top->eval();
    }
    top->rst = 0;

    long cycle = 0, in_idx = 0, last_progress = 0;
    bool holding = false;  // s_axis_tvalid is up and must stay so until the word moves (AXI rule)
    std::string deadlock;
    while ((long)outw.size() < total_out) {
        if (!holding && in_idx < total_in && !(gap > 0 && uni(rng) < gap)) holding = true;
        top->s_axis_tvalid = holding;
        top->s_axis_tdata = holding ? words[in_idx] : 0;
        top->s_axis_tlast = holding && (in_idx % AF_WORDS_IN == AF_WORDS_IN - 1);
        top->m_axis_tready = !(bp > 0 && uni(rng) < bp);
        top->clk = 0;
        top->eval();
        // handshakes and FIFO levels of this cycle, sampled before the edge that moves them
        const bool in_fire = top->s_axis_tvalid && top->s_axis_tready;
        const bool out_fire = top->m_axis_tvalid && top->m_axis_tready;
        const uint64_t out_word = top->m_axis_tdata;
        const bool out_last = top->m_axis_tlast;
        bool moved = in_fire || out_fire;
        for (int s = 0; s < AF_N_STREAMS; s++) {
            int c = (int)field_of(top->fifo_count, AF_COUNT_OFFSET[s], AF_COUNT_BITS[s]);
            if (c > high[s]) high[s] = c;
            moved = moved || (bit_of(top->in_valid, s) && bit_of(top->in_ready, s)) ||
                    (bit_of(top->out_valid, s) && bit_of(top->out_ready, s));
        }
        top->clk = 1;
        top->eval();
        if (in_fire) {
            if (in_idx % AF_WORDS_IN == 0) first_in[in_idx / AF_WORDS_IN] = cycle;
            in_idx++;
            holding = false;
        }
        if (out_fire) {
            const long k = (long)outw.size();
            const bool want_last = (k % AF_WORDS_OUT == AF_WORDS_OUT - 1);
            if (out_last != want_last) tlast_errors++;
            outw.push_back(out_word);
            if (want_last) {
                last_out[k / AF_WORDS_OUT] = cycle;
                const long img = k / AF_WORDS_OUT + 1;
                if (progress > 0 && (img % progress == 0 || img == n_images)) {
                    printf("[cosim] image %ld/%ld done at cycle %ld\n", img, n_images, cycle);
                    fflush(stdout);
                }
            }
        }
        if (moved) last_progress = cycle;
        cycle++;
        if (cycle - last_progress > timeout) {
            std::string names;
            for (int s = 0; s < AF_N_STREAMS; s++) {
                int c = (int)field_of(top->fifo_count, AF_COUNT_OFFSET[s], AF_COUNT_BITS[s]);
                std::string why;
                if (c >= AF_STREAM_DEPTH[s]) why = "FIFO full " + std::to_string(c) + "/" + std::to_string(AF_STREAM_DEPTH[s]);
                else if (bit_of(top->out_valid, s) && !bit_of(top->out_ready, s)) why = "valid && !ready";
                if (!why.empty()) names += (names.empty() ? "" : ", ") + std::string(AF_STREAM_NAMES[s]) + " (" + why + ")";
            }
            deadlock = "no progress for " + std::to_string(timeout) + " cycles at cycle " + std::to_string(cycle) +
                       " after " + std::to_string(outw.size() / AF_WORDS_OUT) + " of " + std::to_string(n_images) +
                       " images; stalled streams: " + (names.empty() ? "none (a process is stuck)" : names);
            break;
        }
    }
    const int status = (int)top->status;
    top->final();
    delete top;

    FILE *o = fopen(out_path, "wb");
    if (!o || fwrite(outw.data(), 8, outw.size(), o) != outw.size()) {
        fprintf(stderr, "%s: cannot write the output words\n", out_path);
        return 2;
    }
    fclose(o);
    FILE *js = fopen(stats_path, "w");
    if (!js) {
        fprintf(stderr, "%s: cannot write\n", stats_path);
        return 2;
    }
    fprintf(js, "{\"cycles\": %ld, \"images\": %ld, \"words_out\": %zu, \"tlast_errors\": %ld, \"status\": %d,\n", cycle,
            n_images, outw.size(), tlast_errors, status);
    fprintf(js, " \"deadlock\": %s%s%s,\n", deadlock.empty() ? "" : "\"", deadlock.empty() ? "null" : deadlock.c_str(),
            deadlock.empty() ? "" : "\"");
    fprintf(js, " \"first_in\": [");
    for (long i = 0; i < n_images; i++) fprintf(js, "%s%ld", i ? ", " : "", first_in[i]);
    fprintf(js, "],\n \"last_out\": [");
    for (long i = 0; i < n_images; i++) fprintf(js, "%s%ld", i ? ", " : "", last_out[i]);
    fprintf(js, "],\n \"high_water\": {");
    for (int s = 0; s < AF_N_STREAMS; s++) fprintf(js, "%s\"%s\": %d", s ? ", " : "", AF_STREAM_NAMES[s], high[s]);
    fprintf(js, "}}\n");
    fclose(js);
    if (!deadlock.empty()) {
        fprintf(stderr, "deadlock: %s\n", deadlock.c_str());
        return 3;
    }
    return 0;
}
