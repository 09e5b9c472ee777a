// AdderFlow accelerator top: the hls4ml network behind AXI4-Stream in/out (with TLAST) and an
// AXI4-Lite control port holding the number of images per call.
//
// The word layout mirrors flow/driver/packing.py (the one definition): per image the network's
// input integers in H, W, C order, IN_LANES lanes of IN_LANE_BITS per WORD_BITS word, lane 0 in the
// low bits, each image starting on a fresh word; the logits likewise with OUT_LANES lanes. The
// constants live in the generated adderflow_axi_top.h. Input quantisation (uint8 image -> int8) and
// output dequantisation (integer logits -> float) run in the driver, so the PL datapath stays integer.
//
// Copied verbatim into <hls_prj>/firmware/ by flow.board.axi_top.write_axi_top.
#include "adderflow_axi_top.h"

namespace adderflow {

// Status bits of one call (the `status` register; 0 = clean):
//   STATUS_EARLY_TLAST   input TLAST came before the last word of the n_images images: the rest of the
//                        images is read as zeros (the DMA has nothing more to send; waiting would hang)
//   STATUS_NO_TLAST      the last input word of the call came without TLAST (the DMA sends more words
//                        than n_images need; they are left in the stream)
static const unsigned STATUS_EARLY_TLAST = 1, STATUS_NO_TLAST = 2;

// One value per cycle: a CIFAR image is 3072 cycles, far below the network's interval.
static void unpack_inputs(hls::stream<word_t> &in_stream, hls::stream<input_t> &x, unsigned n_images,
                          unsigned &status) {
    unsigned flags = 0;
    bool ended = false; // TLAST seen: no more beats will come in this call
images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1024
        word_data_t word = 0;
        input_t pixel;
        unsigned lane = 0, channel = 0;
    values:
        for (unsigned k = 0; k < IN_WORDS * IN_LANES; k++) {
            #pragma HLS PIPELINE II=1
            if (lane == 0) {
                const bool final_word = (img == n_images - 1) && (k == (IN_WORDS - 1) * IN_LANES);
                if (ended) {
                    word = 0;
                } else {
                    word_t beat = in_stream.read();
                    word = beat.data;
                    if (beat.last && !final_word) {
                        ended = true;
                        flags |= STATUS_EARLY_TLAST;
                    } else if (!beat.last && final_word) {
                        flags |= STATUS_NO_TLAST;
                    }
                }
            }
            if (k < IN_VALUES) {
                in_lane_t raw = word >> (lane * IN_LANE_BITS);  // keeps the low IN_LANE_BITS bits
                in_value_t value = raw;                         // reinterpret as signed when IN_SIGNED
                pixel[channel] = value;
                if (channel == input_t::size - 1) {
                    x.write(pixel);
                    channel = 0;
                } else {
                    channel++;
                }
            }
            lane = (lane == IN_LANES - 1) ? 0 : lane + 1;
        }
    }
    status = flags;
}

static void pack_outputs(hls::stream<result_t> &y, hls::stream<word_t> &out_stream, unsigned n_images) {
images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1024
        word_data_t word = 0;
        result_t logits;
        unsigned lane = 0, element = 0, word_index = 0;
    values:
        for (unsigned k = 0; k < OUT_WORDS * OUT_LANES; k++) {
            #pragma HLS PIPELINE II=1
            if (k < OUT_VALUES) {
                if (element == 0) logits = y.read();
                out_value_t value = logits[element].to_int64();  // the network's output type holds integers
                out_lane_t bits = value;                          // two's complement at lane width
                word |= word_data_t(bits) << (lane * OUT_LANE_BITS);
                element = (element == result_t::size - 1) ? 0 : element + 1;
            }
            if (lane == OUT_LANES - 1) {
                out_stream.write(make_beat(word, (img == n_images - 1) && (word_index == OUT_WORDS - 1)));
                word = 0;
                word_index++;
                lane = 0;
            } else {
                lane++;
            }
        }
    }
}

} // namespace adderflow

// One call runs n_images back to back: every process of the network loops over them, so images overlap
// in the DATAFLOW region and the rate is the slowest process's interval (n_images = 0: nothing runs, no
// beat is sent; the driver never starts a DMA transfer for zero images).
void adderflow_top(hls::stream<adderflow::word_t> &in_stream, hls::stream<adderflow::word_t> &out_stream,
                   unsigned n_images, unsigned &status) {
    #pragma HLS INTERFACE axis port=in_stream
    #pragma HLS INTERFACE axis port=out_stream
    #pragma HLS INTERFACE s_axilite port=n_images bundle=control
    #pragma HLS INTERFACE s_axilite port=status bundle=control
    #pragma HLS INTERFACE s_axilite port=return bundle=control
    #pragma HLS DATAFLOW
    hls::stream<input_t> x("adderflow_x");
    #pragma HLS STREAM variable=x depth=2
    hls::stream<result_t> y("adderflow_y");
    #pragma HLS STREAM variable=y depth=2
    adderflow::unpack_inputs(in_stream, x, n_images, status);
    ADDERFLOW_NETWORK(x, y, n_images);
    adderflow::pack_outputs(y, out_stream, n_images);
}
