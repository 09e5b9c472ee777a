// AdderFlow integer stream layers for hls4ml (io_stream): adder (SAD) and integer convolutions on
// hls4ml's line buffer, BN+ReLU+requantisation (+ residual add) fused into them, global sum pooling,
// integer dense. The rules these templates follow, each with its UG1399 section, are in README.md
// beside this file; flow/hls/schedule.py is the one definition of every constant the configs carry.
//
// Semantics are those of flow/qnet.py, bit for bit:
//   adder2d  acc[c] = sum_{u,v,ci} | a_{g(c)}[i*s+u, j*s+v, ci] - W[u,v,ci,c] |   (zero padding)
//            a_g = clip((x * gmult[g] + 2^(gshift[g]-1)) >> gshift[g], 0, 2^b-1), identity if gmult[g] == 0
//   conv2d   acc[c] = sum x * W
//   requant  out = clip((sum_k in_k[c] * mult[k][c] + bias[c] + 2^(shift-1)) >> shift, lo, hi)
//   pool     acc[c] = sum_{i,j} x[i,j,c]
//   dense    acc[c] = sum_ci x[ci] * W[ci][c]
//
// Every process loops over the n_images of one call, so images overlap in the DATAFLOW region and the
// slowest process's per-image cycle count is the interval (UG1399 "Dataflow", task-level pipelining).
// There is ONE code path: C simulation runs exactly what synthesis compiles.
#ifndef NNET_ADDER_STREAM_H_
#define NNET_ADDER_STREAM_H_

#include "ap_int.h"
#include "ap_shift_reg.h"
#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_conv_stream.h" // hls4ml's line buffer: shift_line_buffer / kernel_shift_2d
#include "nnet_types.h"

namespace nnet {

// The PE helpers are always inlined: HLS inlines them anyway (#pragma HLS INLINE), and g++ otherwise
// keeps the recursive adder tree as calls, which makes C simulation several times slower.
#define ADDER_INLINE __attribute__((always_inline)) inline

// ceil(log2(n)), at compile time (C++11)
template <unsigned N> struct adder_clog2 {
    static const unsigned value = 1 + adder_clog2<(N + 1) / 2>::value;
};
template <> struct adder_clog2<1> { static const unsigned value = 0; };
template <> struct adder_clog2<0> { static const unsigned value = 0; };

// Stand-ins for the tables a layer does not have (no shift-add, no fused requant, no input groups):
// one element each, never read (the reads are behind compile-time-false conditions).
static const ap_uint<8> no_exps[1] = {0};
static const ap_int<2> no_signs[1] = {0};
static const ap_int<2> no_gmult[1] = {0};
static const ap_uint<1> no_gshift[1] = {0};

// ---- constant multiplication: plain product, or a sum of signed powers of two (no DSP) -----------
// exps/signs hold T entries for this constant, T_STRIDE apart (the tables are term-major, so that one
// ARRAY_RESHAPE word at a reuse-cycle address holds every lane's terms); sign 0 marks an unused term.
// Exponents are unsigned: a shift by a negative amount is undefined in C++ and in the RTL.
template <class R, unsigned T, unsigned T_STRIDE, class X, class V, class E, class S>
ADDER_INLINE R const_mult(X x, V value, const E *exps, const S *signs) {
    #pragma HLS INLINE
    if (T == 0) {
        return (R)x * (R)value;
    }
    R acc = 0;
ShiftAdd:
    for (unsigned t = 0; t < T; t++) {
        #pragma HLS UNROLL
        R term = ((R)x) << exps[t * T_STRIDE];
        if (signs[t * T_STRIDE] > 0) {
            acc += term;
        } else if (signs[t * T_STRIDE] < 0) {
            acc -= term;
        }
    }
    return acc;
}

// ---- the adder PE: sum of absolute differences, add / subtract / compare / negate only -----------
// N unsigned terms of W bits summed as a balanced tree; every node is typed by its own bound
// (W + ceil(log2 n) bits for n terms), so no adder is wider than its operands need.
template <unsigned N, unsigned W, unsigned OFF> struct sad_tree {
    static const unsigned HALF = N / 2;
    typedef ap_uint<W + adder_clog2<N>::value> sum_t;
    template <class T> ADDER_INLINE static sum_t sum(const T x[]) {
        #pragma HLS INLINE
        sum_t s = sad_tree<HALF, W, OFF>::sum(x); // compound adds: the same adder, 2x faster in C simulation
        s += sad_tree<N - HALF, W, OFF + HALF>::sum(x);
        return s;
    }
};
template <unsigned W, unsigned OFF> struct sad_tree<1, W, OFF> {
    typedef ap_uint<W> sum_t;
    template <class T> ADDER_INLINE static sum_t sum(const T x[]) {
        #pragma HLS INLINE
        return x[OFF];
    }
};

// Lane wiring (hls4ml dense_resource, RF | n_in): lane m of a filter takes tap m*RF + r in cycle r; the
// weight of filter f at tap k is element f*n_in + k of the filter-major ROM. m and f are unrolled loop
// indices and RF, n_in compile-time constants, so these products are wiring, not multipliers; keeping them
// here leaves the datapath functions free of '*', '/' and '%' (tests grep them).
template <typename CONFIG_T> ADDER_INLINE unsigned lane_tap(unsigned m, unsigned r) {
    return m * CONFIG_T::reuse_factor + r;
}
template <typename CONFIG_T> ADDER_INLINE unsigned weight_index(unsigned f, unsigned k) {
    return f * CONFIG_T::n_in + k;
}

// One reuse cycle r of the SAD kernel (hls4ml's dense_resource rule, RF | n_in): lane (f, m) is wired to
// filter f and, in cycle r, to tap k = m*RF + r; its weight is word r, field f*M + m of the reshaped
// ROM. The filter of a lane and its input group are compile-time constants (CONFIG_T::group_of is a
// constexpr table), so there is no runtime %, / or accumulator index: each accumulator has exactly one
// adder, fed by the bound-typed tree of its M lanes.
template <typename CONFIG_T>
ADDER_INLINE void sad_cycle(const typename CONFIG_T::act_t win[CONFIG_T::n_groups][CONFIG_T::n_in],
                      const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                      typename CONFIG_T::accum_t acc[CONFIG_T::n_filt], unsigned r) {
    #pragma HLS INLINE
    const unsigned M = CONFIG_T::lanes_per_filter;
SadFilters:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        const unsigned g = CONFIG_T::group_of(f);
        typename CONFIG_T::term_t term[M];
        #pragma HLS ARRAY_PARTITION variable=term complete
    SadLanes:
        for (unsigned m = 0; m < M; m++) {
            #pragma HLS UNROLL
            const unsigned k = lane_tap<CONFIG_T>(m, r);
            // a - w is exact in diff_t (schedule.sad_widths); |d| fits term_t
            const typename CONFIG_T::diff_t d = win[g][k].to_int() - weights[weight_index<CONFIG_T>(f, k)].to_int();
            term[m] = (d < 0) ? -d.to_int() : d.to_int();
        }
        typename CONFIG_T::psum_t psum = sad_tree<M, CONFIG_T::term_bits, 0>::sum(term);
        if (r == 0) {
            acc[f] = psum;
        } else {
            acc[f] += psum;
        }
    }
}

// The same lane rule for the integer MAC (first convolution, dense): a product (or CSD shift-add with
// the lane's term-major exponent table) per lane, summed per filter.
template <typename CONFIG_T, class x_T>
ADDER_INLINE void mac_cycle(const x_T *x, const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms], const ap_uint<8> *w_exps,
                      const ap_int<2> *w_signs, typename CONFIG_T::accum_t acc[CONFIG_T::n_filt], unsigned r) {
    #pragma HLS INLINE
    const unsigned M = CONFIG_T::lanes_per_filter;
MacFilters:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        typename CONFIG_T::accum_t psum = 0;
    MacLanes:
        for (unsigned m = 0; m < M; m++) {
            #pragma HLS UNROLL
            const unsigned k = lane_tap<CONFIG_T>(m, r);
            const unsigned i = weight_index<CONFIG_T>(f, k);
            psum += const_mult<typename CONFIG_T::accum_t, CONFIG_T::csd_terms, CONFIG_T::n_terms>(
                x[k], weights[i], w_exps + i, w_signs + i);
        }
        acc[f] = (r == 0) ? psum : (typename CONFIG_T::accum_t)(acc[f] + psum);
    }
}

// ---- requantisation (fused into the producing layer, or a process of its own) --------------------
// v = bias + sum_k in_k * mult_k on sum_t (the exact width: flow/hls/schedule.py requant_sum_bits),
// round half up, saturate.
template <typename RQ_T> ADDER_INLINE typename RQ_T::out_elem_t requant_round_clip(typename RQ_T::sum_t v) {
    #pragma HLS INLINE
    if (RQ_T::shift > 0) {
        v += ((typename RQ_T::sum_t)1) << (RQ_T::shift - 1);
    }
    v = v >> RQ_T::shift; // arithmetic: floor division, so the rounding is half-up
    if (v < RQ_T::out_lo) {
        v = RQ_T::out_lo;
    } else if (v > RQ_T::out_hi) {
        v = RQ_T::out_hi;
    }
    return (typename RQ_T::out_elem_t)v;
}

template <typename RQ_T> ADDER_INLINE unsigned rq_channel(unsigned b, unsigned q) {
    return b * RQ_T::rq_reuse + q; // lane b, cycle q: wiring (b unrolled, rq_reuse a constant)
}

// Requant cycle q of R: lane b handles channel c = b*R + q (fixed lane, channel block by cycle), so a
// lane's operands are an R:1 selection and its constants word q of the reshaped tables.
template <typename RQ_T, class acc_T, class x2_T, class res_T>
ADDER_INLINE void requant_cycle(const acc_T &acc, const x2_T &x2, unsigned q, res_T &out, const typename RQ_T::mult_t *mult,
                          const typename RQ_T::bias_t *bias, const ap_uint<8> *exps, const ap_int<2> *signs) {
    #pragma HLS INLINE
    const unsigned C = RQ_T::rq_chan, N = RQ_T::n_inputs * C;
RequantLanes:
    for (unsigned b = 0; b < RQ_T::rq_lanes; b++) {
        #pragma HLS UNROLL
        const unsigned c = rq_channel<RQ_T>(b, q);
        typename RQ_T::sum_t v = bias[c];
        v += const_mult<typename RQ_T::sum_t, RQ_T::rq_csd_terms, N>(acc[c], mult[c], exps + c, signs + c);
        if (RQ_T::n_inputs > 1) {
            v += const_mult<typename RQ_T::sum_t, RQ_T::rq_csd_terms, N>(x2[c], mult[C + c], exps + C + c,
                                                                         signs + C + c);
        }
        out[c] = requant_round_clip<RQ_T>(v);
    }
}

// ---- per-group input rescale of one activation (identity where the group multiplier is 0) --------
template <typename CONFIG_T, class in_T>
ADDER_INLINE typename CONFIG_T::act_t rescale_activation(in_T x, typename CONFIG_T::gmult_t m, typename CONFIG_T::gshift_t s,
                                                   const ap_uint<8> *exps, const ap_int<2> *signs) {
    #pragma HLS INLINE
    typedef typename CONFIG_T::gprod_t prod_t;
    if (m == 0) {
        return (typename CONFIG_T::act_t)x;
    }
    prod_t v = const_mult<prod_t, CONFIG_T::g_csd_terms, CONFIG_T::n_groups>(x, m, exps, signs);
    if (s > 0) {
        v += ((prod_t)1) << (s - 1);
    }
    v = v >> s;
    const prod_t hi = (1 << CONFIG_T::act_bits) - 1;
    if (v < 0) {
        v = 0;
    } else if (v > hi) {
        v = hi;
    }
    return (typename CONFIG_T::act_t)v;
}

// ---- the window layer ----------------------------------------------------------------------------
// hls4ml's io_stream structure (nnet_conv_stream.h): per input group, (KH-1) ap_shift_reg line buffers
// of the padded width per channel and a KH x KW x C shift-register window (shift_line_buffer), fed one
// padded position per cycle; padding positions shift in zeros without reading the stream.
// Schedule, per image, one flattened loop at II=1 (UG1399 "pipeline", "loop flatten"):
//   HP*WP walker steps (one padded position each) + Ho*Wo*RF kernel cycles (+ rq_reuse drain cycles).
// A walker step that completes a strided window starts the kernel; the walker waits while the kernel
// runs (so the window registers need no second copy), i.e. an output needs exactly the input pixels
// its window covers (what flow/hls/schedule.py's FIFO analysis assumes). When the requantisation is
// fused, the finished accumulators are latched and requantised over rq_reuse <= RF cycles while the
// kernel computes the next pixel; a residual input is read as that requantisation starts.
struct window_walk {
    unsigned ip, jp, row_phase, col_phase; // padded position and the stride phases
};

template <typename CONFIG_T> ADDER_INLINE void window_advance(window_walk &w) {
    #pragma HLS INLINE
    const unsigned KH = CONFIG_T::filt_height, KW = CONFIG_T::filt_width;
    const unsigned WP = CONFIG_T::in_width + CONFIG_T::pad_left + CONFIG_T::pad_right;
    if (w.jp + 1 >= KW) {
        w.col_phase = (w.col_phase + 1 == CONFIG_T::stride) ? 0 : w.col_phase + 1;
    }
    if (w.jp + 1 == WP) {
        w.jp = 0;
        w.col_phase = 0;
        if (w.ip + 1 >= KH) {
            w.row_phase = (w.row_phase + 1 == CONFIG_T::stride) ? 0 : w.row_phase + 1;
        }
        w.ip++;
    } else {
        w.jp++;
    }
}

// The line buffer's view of one input group: the config hls4ml's shift_line_buffer reads.
template <typename CONFIG_T> struct line_buffer_config {
    static const unsigned in_width = CONFIG_T::in_width + CONFIG_T::pad_left + CONFIG_T::pad_right;
    static const unsigned filt_height = CONFIG_T::filt_height;
    static const unsigned filt_width = CONFIG_T::filt_width;
    static const unsigned n_chan = CONFIG_T::n_chan;
};

template <typename CONFIG_T> struct window_types {
    typedef nnet::array<typename CONFIG_T::act_t, CONFIG_T::n_chan> column_t;
    typedef ap_shift_reg<typename CONFIG_T::act_t, line_buffer_config<CONFIG_T>::in_width> row_t;
};

// One walker step: the pixel at padded position w (zero in the padding) into every group's line buffer
// and window; true where a strided window is complete.
template <class data_T, typename CONFIG_T, bool IS_ADDER>
ADDER_INLINE bool window_step(hls::stream<data_T> &data, const window_walk &w,
                        typename window_types<CONFIG_T>::row_t lbuf[CONFIG_T::n_groups][CONFIG_T::filt_height > 1
                                                                                            ? CONFIG_T::filt_height - 1
                                                                                            : 1][CONFIG_T::n_chan],
                        typename CONFIG_T::act_t win[CONFIG_T::n_groups][CONFIG_T::n_in],
                        const typename CONFIG_T::gmult_t *gmult, const typename CONFIG_T::gshift_t *gshift,
                        const ap_uint<8> *g_exps, const ap_int<2> *g_signs) {
    #pragma HLS INLINE
    const bool inside = w.ip >= CONFIG_T::pad_top && w.ip < CONFIG_T::pad_top + CONFIG_T::in_height &&
                        w.jp >= CONFIG_T::pad_left && w.jp < CONFIG_T::pad_left + CONFIG_T::in_width;
    data_T px;
    if (inside) {
        px = data.read();
    }
WindowGroups:
    for (unsigned g = 0; g < CONFIG_T::n_groups; g++) {
        #pragma HLS UNROLL
        typename window_types<CONFIG_T>::column_t col;
    WindowRescale:
        for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
            #pragma HLS UNROLL
            typename CONFIG_T::act_t a = 0;
            if (inside) {
                if (IS_ADDER) {
                    a = rescale_activation<CONFIG_T>(px[c], gmult[g], gshift[g], g_exps + g, g_signs + g);
                } else {
                    a = px[c];
                }
            }
            col[c] = a;
        }
        nnet::shift_line_buffer<typename window_types<CONFIG_T>::column_t, line_buffer_config<CONFIG_T> >(
            col, lbuf[g], win[g]);
    }
    const bool row_ready = w.ip + 1 >= CONFIG_T::filt_height && w.row_phase == 0;
    const bool col_ready = w.jp + 1 >= CONFIG_T::filt_width && w.col_phase == 0;
    return row_ready && col_ready;
}

// The requant fused into a window layer: RQ_T is the layer config itself (rq_* fields).
template <class data_T, class x2_T, class res_T, typename CONFIG_T, bool IS_ADDER>
void window_stream(hls::stream<data_T> &data, hls::stream<x2_T> &shortcut, hls::stream<res_T> &res,
                   const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                   const typename CONFIG_T::gmult_t gmult[CONFIG_T::n_groups],
                   const typename CONFIG_T::gshift_t gshift[CONFIG_T::n_groups],
                   const ap_uint<8> g_exps[CONFIG_T::g_table_size], const ap_int<2> g_signs[CONFIG_T::g_table_size],
                   const ap_uint<8> w_exps[CONFIG_T::w_table_size], const ap_int<2> w_signs[CONFIG_T::w_table_size],
                   const typename CONFIG_T::mult_t rq_mult[CONFIG_T::rq_mult_size],
                   const typename CONFIG_T::bias_t rq_bias[CONFIG_T::rq_bias_size],
                   const ap_uint<8> rq_exps[CONFIG_T::rq_table_size], const ap_int<2> rq_signs[CONFIG_T::rq_table_size],
                   unsigned n_images) {
    static_assert(!CONFIG_T::fused || CONFIG_T::rq_reuse <= CONFIG_T::reuse_factor,
                  "a fused requant must finish within one kernel run (rq_reuse <= reuse_factor)");
    static_assert(CONFIG_T::n_in % CONFIG_T::reuse_factor == 0, "reuse_factor must divide n_in (schedule.py)");

    const unsigned KH = CONFIG_T::filt_height, G = CONFIG_T::n_groups, RF = CONFIG_T::reuse_factor;
    const unsigned R = CONFIG_T::rq_reuse;
    const unsigned HP = CONFIG_T::in_height + CONFIG_T::pad_top + CONFIG_T::pad_bottom;
    const unsigned WP = CONFIG_T::in_width + CONFIG_T::pad_left + CONFIG_T::pad_right;
    const unsigned STEPS = HP * WP + CONFIG_T::out_height * CONFIG_T::out_width * RF + (CONFIG_T::fused ? R : 0);
    // weights: RF words of (n_filt * lanes_per_filter) lanes (hls4ml's resource-strategy layout)
    #pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::block_factor
    #pragma HLS ARRAY_RESHAPE variable=w_exps block factor=CONFIG_T::w_table_factor
    #pragma HLS ARRAY_RESHAPE variable=w_signs block factor=CONFIG_T::w_table_factor
    // requant constants: R words of rq_lanes lanes (per input), complete where R == 1
    #pragma HLS ARRAY_RESHAPE variable=rq_mult block factor=CONFIG_T::rq_mult_factor
    #pragma HLS ARRAY_RESHAPE variable=rq_bias block factor=CONFIG_T::rq_lanes
    #pragma HLS ARRAY_RESHAPE variable=rq_exps block factor=CONFIG_T::rq_table_factor
    #pragma HLS ARRAY_RESHAPE variable=rq_signs block factor=CONFIG_T::rq_table_factor
    #pragma HLS ARRAY_PARTITION variable=gmult complete
    #pragma HLS ARRAY_PARTITION variable=gshift complete
    #pragma HLS ARRAY_PARTITION variable=g_exps complete
    #pragma HLS ARRAY_PARTITION variable=g_signs complete
    typename window_types<CONFIG_T>::row_t lbuf[G][KH > 1 ? KH - 1 : 1][CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=lbuf complete dim=0
    typename CONFIG_T::act_t win[G][CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=win complete dim=0
    typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    typename CONFIG_T::accum_t done[CONFIG_T::n_filt]; // finished accumulators under requantisation
    #pragma HLS ARRAY_PARTITION variable=done complete
    x2_T x2;
    res_T out;
    PRAGMA_DATA_PACK(out)
Images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1
        window_walk w = {0, 0, 0, 0};
        bool busy = false, rq_busy = false; // kernel running / requantisation running
        unsigned r = 0, q = 0;
    WindowSteps:
        for (unsigned t = 0; t < STEPS; t++) {
            #pragma HLS PIPELINE II=1
            if (CONFIG_T::fused && rq_busy) {
                requant_cycle<CONFIG_T>(done, x2, q, out, rq_mult, rq_bias, rq_exps, rq_signs);
                if (q == R - 1) {
                    res.write(out);
                    rq_busy = false;
                } else {
                    q++;
                }
            }
            if (busy) {
                if (IS_ADDER) {
                    sad_cycle<CONFIG_T>(win, weights, acc, r);
                } else {
                    mac_cycle<CONFIG_T>(win[0], weights, w_exps, w_signs, acc, r);
                }
                if (r == RF - 1) {
                    busy = false;
                    if (CONFIG_T::fused) {
                    Latch:
                        for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
                            #pragma HLS UNROLL
                            done[f] = acc[f];
                        }
                        if (CONFIG_T::n_inputs > 1) {
                            x2 = shortcut.read();
                        }
                        rq_busy = true;
                        q = 0;
                    } else {
                    Emit:
                        for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
                            #pragma HLS UNROLL
                            out[f] = acc[f];
                        }
                        res.write(out);
                    }
                } else {
                    r++;
                }
            } else if (w.ip < HP) {
                busy = window_step<data_T, CONFIG_T, IS_ADDER>(data, w, lbuf, win, gmult, gshift, g_exps, g_signs);
                r = 0;
                window_advance<CONFIG_T>(w);
            }
        }
    }
}

// Entry points. Without a residual input the shortcut is a local stream that is never accessed.
template <class data_T, class res_T, typename CONFIG_T>
void adder_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                      const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                      const typename CONFIG_T::gmult_t gmult[CONFIG_T::n_groups],
                      const typename CONFIG_T::gshift_t gshift[CONFIG_T::n_groups],
                      const ap_uint<8> g_exps[CONFIG_T::g_table_size], const ap_int<2> g_signs[CONFIG_T::g_table_size],
                      const typename CONFIG_T::mult_t rq_mult[CONFIG_T::rq_mult_size],
                      const typename CONFIG_T::bias_t rq_bias[CONFIG_T::rq_bias_size],
                      const ap_uint<8> rq_exps[CONFIG_T::rq_table_size], const ap_int<2> rq_signs[CONFIG_T::rq_table_size],
                      unsigned n_images) {
    hls::stream<data_T> no_shortcut;
    window_stream<data_T, data_T, res_T, CONFIG_T, true>(data, no_shortcut, res, weights, gmult, gshift, g_exps, g_signs,
                                                          no_exps, no_signs, rq_mult, rq_bias, rq_exps, rq_signs,
                                                          n_images);
}

template <class data_T, class x2_T, class res_T, typename CONFIG_T>
void adder_conv_2d_add_cl(hls::stream<data_T> &data, hls::stream<x2_T> &shortcut, hls::stream<res_T> &res,
                          const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                          const typename CONFIG_T::gmult_t gmult[CONFIG_T::n_groups],
                          const typename CONFIG_T::gshift_t gshift[CONFIG_T::n_groups],
                          const ap_uint<8> g_exps[CONFIG_T::g_table_size],
                          const ap_int<2> g_signs[CONFIG_T::g_table_size],
                          const typename CONFIG_T::mult_t rq_mult[CONFIG_T::rq_mult_size],
                          const typename CONFIG_T::bias_t rq_bias[CONFIG_T::rq_bias_size],
                          const ap_uint<8> rq_exps[CONFIG_T::rq_table_size],
                          const ap_int<2> rq_signs[CONFIG_T::rq_table_size], unsigned n_images) {
    window_stream<data_T, x2_T, res_T, CONFIG_T, true>(data, shortcut, res, weights, gmult, gshift, g_exps, g_signs,
                                                        no_exps, no_signs, rq_mult, rq_bias, rq_exps, rq_signs, n_images);
}

template <class data_T, class res_T, typename CONFIG_T>
void int_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                    const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                    const ap_uint<8> w_exps[CONFIG_T::w_table_size], const ap_int<2> w_signs[CONFIG_T::w_table_size],
                    const typename CONFIG_T::mult_t rq_mult[CONFIG_T::rq_mult_size],
                    const typename CONFIG_T::bias_t rq_bias[CONFIG_T::rq_bias_size],
                    const ap_uint<8> rq_exps[CONFIG_T::rq_table_size], const ap_int<2> rq_signs[CONFIG_T::rq_table_size],
                    unsigned n_images) {
    hls::stream<data_T> no_shortcut;
    window_stream<data_T, data_T, res_T, CONFIG_T, false>(data, no_shortcut, res, weights, no_gmult, no_gshift, no_exps,
                                                           no_signs, w_exps, w_signs, rq_mult, rq_bias, rq_exps, rq_signs,
                                                           n_images);
}

// ---- requantisation as its own process (where it cannot be fused): R cycles per pixel -------------
template <class data1_T, class data2_T, class res_T, typename CONFIG_T>
void requant_add_stream(hls::stream<data1_T> &data1, hls::stream<data2_T> &data2, hls::stream<res_T> &res,
                        const typename CONFIG_T::mult_t mult[CONFIG_T::rq_mult_size],
                        const typename CONFIG_T::bias_t bias[CONFIG_T::rq_bias_size],
                        const ap_uint<8> exps[CONFIG_T::rq_table_size], const ap_int<2> signs[CONFIG_T::rq_table_size],
                        unsigned n_images) {

    const unsigned R = CONFIG_T::rq_reuse;
    #pragma HLS ARRAY_RESHAPE variable=mult block factor=CONFIG_T::rq_mult_factor
    #pragma HLS ARRAY_RESHAPE variable=bias block factor=CONFIG_T::rq_lanes
    #pragma HLS ARRAY_RESHAPE variable=exps block factor=CONFIG_T::rq_table_factor
    #pragma HLS ARRAY_RESHAPE variable=signs block factor=CONFIG_T::rq_table_factor
    data1_T x1;
    data2_T x2;
    res_T out;
    PRAGMA_DATA_PACK(out)
Images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1
        unsigned q = 0;
    RequantSteps:
        for (unsigned t = 0; t < CONFIG_T::n_pixels * R; t++) {
            #pragma HLS PIPELINE II=1
            if (q == 0) {
                x1 = data1.read();
                if (CONFIG_T::n_inputs > 1) {
                    x2 = data2.read();
                }
            }
            requant_cycle<CONFIG_T>(x1, x2, q, out, mult, bias, exps, signs);
            if (q == R - 1) {
                res.write(out);
                q = 0;
            } else {
                q++;
            }
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void requant_stream(hls::stream<data_T> &data, hls::stream<res_T> &res,
                    const typename CONFIG_T::mult_t mult[CONFIG_T::rq_mult_size],
                    const typename CONFIG_T::bias_t bias[CONFIG_T::rq_bias_size],
                    const ap_uint<8> exps[CONFIG_T::rq_table_size], const ap_int<2> signs[CONFIG_T::rq_table_size],
                    unsigned n_images) {
    hls::stream<data_T> no_shortcut;
    requant_add_stream<data_T, data_T, res_T, CONFIG_T>(data, no_shortcut, res, mult, bias, exps, signs, n_images);
}

// One stream element from N accumulators (pooling and dense emit their vector once per image).
template <class res_T, unsigned N, class acc_T> ADDER_INLINE void write_vector(hls::stream<res_T> &res, const acc_T acc[N]) {
    res_T out;
    PRAGMA_DATA_PACK(out)
VectorEmit:
    for (unsigned i = 0; i < N; i++) {
        #pragma HLS UNROLL
        out[i] = acc[i];
    }
    res.write(out);
}

// ---- global sum pooling: one pixel per cycle, one output element per image -----------------------
template <class data_T, class res_T, typename CONFIG_T>
void global_sum_pool_stream(hls::stream<data_T> &data, hls::stream<res_T> &res, unsigned n_images) {
    typename CONFIG_T::accum_t acc[CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=acc complete
Images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1
    PoolPixels:
        for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
            #pragma HLS PIPELINE II=1
            data_T x = data.read();
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                acc[c] = (p == 0) ? (typename CONFIG_T::accum_t)x[c] : (typename CONFIG_T::accum_t)(acc[c] + x[c]);
            }
        }
        write_vector<res_T, CONFIG_T::n_chan>(res, acc);
    }
}

// ---- integer dense on one stream element (the pooled vector): RF cycles, lane (f, m) on input m*RF+r
template <class data_T, class res_T, typename CONFIG_T>
void int_dense_stream(hls::stream<data_T> &data, hls::stream<res_T> &res,
                      const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                      const ap_uint<8> w_exps[CONFIG_T::w_table_size], const ap_int<2> w_signs[CONFIG_T::w_table_size],
                      unsigned n_images) {
    static_assert(CONFIG_T::n_in % CONFIG_T::reuse_factor == 0, "reuse_factor must divide n_in (schedule.py)");

    #pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::block_factor
    #pragma HLS ARRAY_RESHAPE variable=w_exps block factor=CONFIG_T::w_table_factor
    #pragma HLS ARRAY_RESHAPE variable=w_signs block factor=CONFIG_T::w_table_factor
    typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    typename data_T::value_type x[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=x complete
Images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1
        data_T in = data.read();
    DenseInput:
        for (unsigned k = 0; k < CONFIG_T::n_in; k++) {
            #pragma HLS UNROLL
            x[k] = in[k];
        }
    DenseReuse:
        for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
            #pragma HLS PIPELINE II=1
            mac_cycle<CONFIG_T>(x, weights, w_exps, w_signs, acc, r);
        }
        write_vector<res_T, CONFIG_T::n_filt>(res, acc);
    }
}

// ---- hls4ml's clone_stream, looping over the images of a call ------------------------------------
template <class data_T, class res_T, int N>
void adder_clone_stream(hls::stream<data_T> &data, hls::stream<res_T> &res1, hls::stream<res_T> &res2,
                        unsigned n_images) {
Images:
    for (unsigned img = 0; img < n_images; img++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=1
    ClonePixels:
        for (int i = 0; i < N / data_T::size; i++) {
            #pragma HLS PIPELINE II=1
            data_T in = data.read();
            res_T out1, out2;
            PRAGMA_DATA_PACK(out1)
            PRAGMA_DATA_PACK(out2)
        ClonePack:
            for (int j = 0; j < data_T::size; j++) {
                #pragma HLS UNROLL
                out1[j] = in[j];
                out2[j] = in[j];
            }
            res1.write(out1);
            res2.write(out2);
        }
    }
}

} // namespace nnet

#endif
