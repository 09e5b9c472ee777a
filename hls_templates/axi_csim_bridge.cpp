// Host-only C entry points around adderflow_top for the emulated overlay (flow/driver/emulation.py):
// DMA words in, DMA words out, exactly as the AXI DMA would stream them. Not part of the IP.
#include <cstdint>
#include "firmware/adderflow_axi_top.h"

using namespace adderflow;

static word_data_t load_word(const uint8_t *bytes) {
    word_data_t w = 0;
    for (unsigned b = 0; b < WORD_BITS / 8; b++) w.range(8 * b + 7, 8 * b) = bytes[b];
    return w;
}

static void store_word(const word_data_t &w, uint8_t *bytes) {
    for (unsigned b = 0; b < WORD_BITS / 8; b++) bytes[b] = (uint8_t)w.range(8 * b + 7, 8 * b).to_uint();
}

extern "C" {

// The layout compiled into this library, for the driver to check against flow.driver.packing.
int adderflow_csim_layout(uint32_t *out, int n) {
    const uint32_t v[] = {WORD_BITS, IN_VALUES, IN_VALUE_BITS, IN_SIGNED, IN_LANE_BITS, IN_WORDS,
                          OUT_VALUES, OUT_VALUE_BITS, OUT_SIGNED, OUT_LANE_BITS, OUT_WORDS};
    const int count = sizeof(v) / sizeof(v[0]);
    for (int i = 0; i < n && i < count; i++) out[i] = v[i];
    return count;
}

// Runs the IP on the words as one DMA transfer (TLAST on the last word) and returns 0. *consumed_words,
// *out_words and *tlast_word (index of the first output beat with TLAST, -1 if none) describe what the
// AXI streams saw; *status is the IP's status register (STATUS_EARLY_TLAST when the transfer held fewer
// words than n_images need: the IP reads the rest as zeros instead of waiting forever).
int adderflow_csim_run(const uint8_t *in_bytes, uint64_t in_words, uint8_t *out_bytes, uint64_t out_capacity_words,
                       uint32_t n_images, uint64_t *consumed_words, uint64_t *out_words, int64_t *tlast_word,
                       uint32_t *status) {
    *consumed_words = 0;
    *out_words = 0;
    *tlast_word = -1;
    *status = 0;
    hls::stream<word_t> in_stream("adderflow_in"), out_stream("adderflow_out");
    for (uint64_t i = 0; i < in_words; i++) {
        in_stream.write(make_beat(load_word(in_bytes + i * (WORD_BITS / 8)), i == in_words - 1));
    }
    unsigned ip_status = 0;
    adderflow_top(in_stream, out_stream, n_images, ip_status);
    *status = ip_status;
    *consumed_words = in_words - in_stream.size();
    while (!in_stream.empty()) in_stream.read();
    uint64_t n = 0;
    while (!out_stream.empty()) {
        word_t beat = out_stream.read();
        if (n < out_capacity_words) store_word(beat.data, out_bytes + n * (WORD_BITS / 8));
        if (beat.last && *tlast_word < 0) *tlast_word = (int64_t)n;
        n++;
    }
    *out_words = n;
    return 0;
}

} // extern "C"
