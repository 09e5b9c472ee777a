// AdderFlow integer stream layers for hls4ml (io_stream): adder (SAD) and integer convolutions on a
// line buffer, fused BN+ReLU+requantisation (+ residual add), global sum pooling, integer dense.
//
// Semantics are those of flow/qnet.py, bit for bit:
//   adder2d  acc[c] = sum_{u,v,ci} | a_{g(c)}[i*s+u, j*s+v, ci] - W[u,v,ci,c] |   (zero padding)
//            a_g = clip((x * gmult[g] + 2^(gshift[g]-1)) >> gshift[g], 0, 2^b-1), identity if gmult[g] == 0
//   conv2d   acc[c] = sum x * W
//   requant  out = clip((sum_k in_k[c] * mult[k][c] + bias[c] + 2^(shift-1)) >> shift, lo, hi)
//   pool     acc[c] = sum_{i,j} x[i,j,c]
//   dense    acc[c] = sum_ci x[ci] * W[ci][c]
//
// Schedule (what the estimator models): a window layer visits every position of the zero-padded
// input once, writing the pixel (n_groups x n_chan lanes, one stream read where the position is inside
// the image) into its line buffer, about one cycle per position; where a strided window completes it
// produces one output pixel (all n_filt channels) in reuse_factor cycles: the PE loop (SadReuse /
// MacReuse / DenseReuse) is pipelined at II=1 over reuse_factor iterations with
// block_factor = ceil(KH*KW*Cin*Cout / reuse_factor) parallel SAD (or MAC) lanes, i.e. II = reuse_factor
// per output pixel; each SAD lane adds into its filter's per-cycle partial sum (psum_t, typed by its
// bound), added once per cycle into the accumulator. Cycles per image ~ Hp*Wp + Ho*Wo*(reuse_factor +
// pipeline depth). A requant handles one pixel per reuse_factor cycles with ceil(C/reuse_factor) lanes
// (reuse_factor 1: C lanes, one pixel per cycle); pool one pixel per cycle. The top is a DATAFLOW region
// of streams, FIFO depths from flow.hls.stream_depths (2; residual-join inputs sized to the branch lag).
#ifndef NNET_ADDER_STREAM_H_
#define NNET_ADDER_STREAM_H_

#include "ap_int.h"
#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_types.h"

namespace nnet {

struct window_config {
    static const unsigned in_height = 1, in_width = 1, n_chan = 1;
    static const unsigned out_height = 1, out_width = 1, n_filt = 1;
    static const unsigned filt_height = 1, filt_width = 1, stride = 1;
    static const unsigned pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
    static const unsigned n_groups = 1, reuse_factor = 1, n_terms = 1, block_factor = 1, win_size = 1;
    static const unsigned csd_terms = 0; // > 0: constant multiplications as shift-add (CSD) terms
    typedef ap_uint<8> act_t;
    typedef ap_int<9> weight_t;
    typedef ap_int<10> diff_t;
    typedef ap_uint<32> accum_t;
    static const unsigned n_slots = 1; // filters one SAD cycle touches: min(block_factor, n_filt / gcd(n_filt, RF))
    typedef ap_uint<32> psum_t; // a filter's per-cycle SAD partial sum (bounded by terms per cycle x max |a - w|)
    typedef ap_int<16> gmult_t;
    typedef ap_uint<5> gshift_t;
};

// ---- constant multiplication: plain product, or a sum of signed powers of two (no DSP) -----------
// exps/signs hold csd_terms entries per constant; sign 0 marks an unused term.
template <class R, unsigned T, class X, class V, class E, class S>
inline R const_mult(X x, V value, const E *exps, const S *signs) {
    #pragma HLS INLINE
    if (T == 0) {
        return (R)x * (R)value;
    }
    R acc = 0;
ShiftAdd:
    for (unsigned t = 0; t < T; t++) {
        #pragma HLS UNROLL
        R term = ((R)x) << exps[t];
        if (signs[t] > 0) {
            acc += term;
        } else if (signs[t] < 0) {
            acc -= term;
        }
    }
    return acc;
}

// ---- the adder PE: sum of absolute differences, add / subtract / compare / negate only -----------
// |a - w| on the narrowest exact difference type, added into a partial sum typed by its bound.
template <class act_T, class weight_T, class diff_T, class accum_T>
inline void sad_accumulate(accum_T &acc, act_T a, weight_T w) {
    #pragma HLS INLINE
    diff_T d = (diff_T)a - (diff_T)w;
    acc += (d < 0) ? (diff_T)(-d) : d;
}

// One cycle r of the SAD schedule (II=1): block_factor lanes, lane b on term idx = r + b*RF (filter
// idx % F, tap idx / F). Lanes b = j (mod n_slots) always hit the same filter (n_slots = filters touched
// per cycle = min(block_factor, F / gcd(F, RF))), so they sum into slot j's partial sum (psum_t, typed by
// its bound) with no lane-to-filter multiplexer; then ONE add per slot into the accumulator of filter
// (r + j*RF) % F (all cleared at r == 0): the loop-carried path is a single add.
template <typename CONFIG_T>
inline void sad_step(typename CONFIG_T::act_t win[CONFIG_T::n_groups][CONFIG_T::win_size],
                     const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                     const ap_uint<8> group_ids[CONFIG_T::n_filt], typename CONFIG_T::accum_t acc[CONFIG_T::n_filt],
                     unsigned r) {
    #pragma HLS INLINE
    const unsigned F = CONFIG_T::n_filt, D = CONFIG_T::n_slots;
    typename CONFIG_T::psum_t psum[D];
    #pragma HLS ARRAY_PARTITION variable=psum complete
SadPsumInit:
    for (unsigned j = 0; j < D; j++) {
        #pragma HLS UNROLL
        psum[j] = 0;
    }
    unsigned idx = r;
SadLanes:
    for (unsigned b = 0; b < CONFIG_T::block_factor; b++) {
        #pragma HLS UNROLL
        if (idx < CONFIG_T::n_terms) {
            sad_accumulate<typename CONFIG_T::act_t, typename CONFIG_T::weight_t, typename CONFIG_T::diff_t,
                           typename CONFIG_T::psum_t>(psum[b % D], win[group_ids[idx % F]][idx / F], weights[idx]);
        }
        idx += CONFIG_T::reuse_factor;
    }
SadClear:
    for (unsigned f = 0; f < F; f++) {
        #pragma HLS UNROLL
        if (r == 0) {
            acc[f] = 0;
        }
    }
    unsigned f = r % F;
SadAccumulate:
    for (unsigned j = 0; j < D; j++) {
        #pragma HLS UNROLL
        acc[f] += psum[j];
        f += CONFIG_T::reuse_factor % F;
        if (f >= F) {
            f -= F;
        }
    }
}

// One output pixel for C simulation: the same terms on the same types, filter-major (integer sums do not
// depend on order); about 15x faster on a CPU than the schedule. Define ADDERFLOW_SCHEDULED_PE to
// C-simulate the synthesised schedule (window_stream's flattened loop of sad_step) instead.
template <typename CONFIG_T>
void sad_pixel(typename CONFIG_T::act_t win[CONFIG_T::n_groups][CONFIG_T::win_size],
               const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms], const ap_uint<8> group_ids[CONFIG_T::n_filt],
               typename CONFIG_T::accum_t acc[CONFIG_T::n_filt]) {
    const unsigned F = CONFIG_T::n_filt;
SadCsimFilters:
    for (unsigned f = 0; f < F; f++) {
        long long a = 0; // exact: the declared accumulator width bounds every partial sum of |.| terms
        unsigned idx = f;
        const unsigned g = group_ids[f];
    SadCsimTerms:
        for (unsigned k = 0; k < CONFIG_T::win_size; k++) {
            long long d = (long long)win[g][k].to_int64() - (long long)weights[idx].to_int64();
            a += (d < 0) ? -d : d;
            idx += F;
        }
        acc[f] = a;
    }
}

// One cycle r of the MAC schedule (multiply-accumulate; or shift-add when csd_terms), as sad_step.
template <typename CONFIG_T>
inline void mac_step(typename CONFIG_T::act_t win[1][CONFIG_T::win_size],
                     const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms], const ap_int<8> *w_exps,
                     const ap_int<2> *w_signs, typename CONFIG_T::accum_t acc[CONFIG_T::n_filt], unsigned r) {
    #pragma HLS INLINE
    const unsigned F = CONFIG_T::n_filt;
MacClear:
    for (unsigned f = 0; f < F; f++) {
        #pragma HLS UNROLL
        if (r == 0) {
            acc[f] = 0;
        }
    }
    unsigned idx = r;
MacLanes:
    for (unsigned b = 0; b < CONFIG_T::block_factor; b++) {
        #pragma HLS UNROLL
        if (idx < CONFIG_T::n_terms) {
            unsigned f = idx % F;
            unsigned k = idx / F;
            acc[f] += const_mult<typename CONFIG_T::accum_t, CONFIG_T::csd_terms>(
                win[0][k], weights[idx], w_exps + idx * CONFIG_T::csd_terms, w_signs + idx * CONFIG_T::csd_terms);
        }
        idx += CONFIG_T::reuse_factor;
    }
}

// Per-group input rescale of one activation (identity where the group multiplier is 0).
template <typename CONFIG_T, class in_T>
inline typename CONFIG_T::act_t rescale_activation(in_T x, typename CONFIG_T::gmult_t m, typename CONFIG_T::gshift_t s,
                                                   const ap_int<8> *exps, const ap_int<2> *signs) {
    #pragma HLS INLINE
    typedef typename CONFIG_T::gprod_t prod_t;
    if (m == 0) {
        return (typename CONFIG_T::act_t)x;
    }
    prod_t v = const_mult<prod_t, CONFIG_T::csd_terms>(x, m, exps, signs);
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

// ---- line-buffer window engine -------------------------------------------------------------------
// Walks the zero-padded input in raster order, reading one pixel per padded position inside the image,
// storing n_groups rescaled versions in a filt_height-row circular buffer; whenever a strided window is
// complete it gathers the window and computes one output pixel in reuse_factor cycles. Synthesis gets
// ONE flattened pipelined loop (II=1) of HP*WP position steps + Ho*Wo*reuse_factor PE steps.
struct window_walk {
    unsigned ip, jp, slot, row_phase, col_phase; // padded position, its line-buffer row, stride phases
};

template <typename CONFIG_T> inline void window_advance(window_walk &w) {
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
        w.slot = (w.slot + 1 == KH) ? 0 : w.slot + 1;
        w.ip++;
    } else {
        w.jp++;
    }
}

// One padded position: its pixel (zero in the padding) into the line buffer; true, with the window
// gathered into win[g][(u*KW + v)*C + c], where a strided window completes.
template <class data_T, typename CONFIG_T, bool IS_ADDER>
inline bool window_position(hls::stream<data_T> &data, const window_walk &w,
                            typename CONFIG_T::act_t lbuf[CONFIG_T::n_groups][CONFIG_T::filt_height]
                                                         [CONFIG_T::in_width + CONFIG_T::pad_left + CONFIG_T::pad_right]
                                                         [CONFIG_T::n_chan],
                            typename CONFIG_T::act_t win[CONFIG_T::n_groups][CONFIG_T::win_size],
                            const typename CONFIG_T::gmult_t *gmult, const typename CONFIG_T::gshift_t *gshift,
                            const ap_int<8> *exps, const ap_int<2> *signs) {
    #pragma HLS INLINE
    const unsigned KH = CONFIG_T::filt_height, KW = CONFIG_T::filt_width, C = CONFIG_T::n_chan;
    const unsigned G = CONFIG_T::n_groups;
    bool inside = w.ip >= CONFIG_T::pad_top && w.ip < CONFIG_T::pad_top + CONFIG_T::in_height &&
                  w.jp >= CONFIG_T::pad_left && w.jp < CONFIG_T::pad_left + CONFIG_T::in_width;
    data_T px;
    if (inside) {
        px = data.read();
    }
Insert:
    for (unsigned c = 0; c < C; c++) {
        #pragma HLS UNROLL
        for (unsigned g = 0; g < G; g++) {
            #pragma HLS UNROLL
            typename CONFIG_T::act_t a = 0;
            if (inside) {
                if (IS_ADDER) {
                    a = rescale_activation<CONFIG_T>(px[c], gmult[g], gshift[g], exps + g * CONFIG_T::csd_terms,
                                                     signs + g * CONFIG_T::csd_terms);
                } else {
                    a = px[c];
                }
            }
            lbuf[g][w.slot][w.jp][c] = a;
        }
    }
    bool row_ready = w.ip + 1 >= KH && w.row_phase == 0;
    bool col_ready = w.jp + 1 >= KW && w.col_phase == 0;
    if (!(row_ready && col_ready)) {
        return false;
    }
Gather: // all K*K*C*G taps at once (lbuf partitioned on groups, rows, channels; cyclic on columns)
    for (unsigned u = 0; u < KH; u++) {
        #pragma HLS UNROLL
        unsigned s = w.slot + 1 + u; // slot of padded row ip - KH + 1 + u (circular)
        if (s >= KH) {
            s -= KH;
        }
        for (unsigned v = 0; v < KW; v++) {
            #pragma HLS UNROLL
            for (unsigned c = 0; c < C; c++) {
                #pragma HLS UNROLL
                for (unsigned g = 0; g < G; g++) {
                    #pragma HLS UNROLL
                    win[g][(u * KW + v) * C + c] = lbuf[g][s][w.jp + 1 - KW + v][c];
                }
            }
        }
    }
    return true;
}

template <class res_T, typename CONFIG_T>
inline void window_emit(hls::stream<res_T> &res, typename CONFIG_T::accum_t acc[CONFIG_T::n_filt]) {
    #pragma HLS INLINE
    res_T out;
    PRAGMA_DATA_PACK(out)
Emit:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        out[f] = acc[f];
    }
    res.write(out);
}

template <class data_T, class res_T, typename CONFIG_T, bool IS_ADDER>
void window_stream(hls::stream<data_T> &data, hls::stream<res_T> &res,
                   const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms], const ap_uint<8> *group_ids,
                   const typename CONFIG_T::gmult_t *gmult, const typename CONFIG_T::gshift_t *gshift,
                   const ap_int<8> *exps, const ap_int<2> *signs) {
    const unsigned KH = CONFIG_T::filt_height, C = CONFIG_T::n_chan, G = CONFIG_T::n_groups;
    const unsigned HP = CONFIG_T::in_height + CONFIG_T::pad_top + CONFIG_T::pad_bottom;
    const unsigned WP = CONFIG_T::in_width + CONFIG_T::pad_left + CONFIG_T::pad_right;
    typename CONFIG_T::act_t lbuf[G][KH][WP][C];
    #pragma HLS ARRAY_PARTITION variable=lbuf complete dim=1
    #pragma HLS ARRAY_PARTITION variable=lbuf complete dim=2
    #pragma HLS ARRAY_PARTITION variable=lbuf complete dim=4
    // a window reads KW adjacent columns of every row at once: KW column banks, one read port each
    #pragma HLS ARRAY_PARTITION variable=lbuf cyclic factor=CONFIG_T::filt_width dim=3
    typename CONFIG_T::act_t win[G][CONFIG_T::win_size];
    #pragma HLS ARRAY_PARTITION variable=win complete dim=0
    typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    window_walk w = {0, 0, 0, 0, 0};
#if !defined(__SYNTHESIS__) && !defined(ADDERFLOW_SCHEDULED_PE)
    // C simulation: position by position, each output pixel in one call (sad_pixel's fast path)
WindowPositions:
    for (unsigned t = 0; t < HP * WP; t++) {
        if (window_position<data_T, CONFIG_T, IS_ADDER>(data, w, lbuf, win, gmult, gshift, exps, signs)) {
            if (IS_ADDER) {
                sad_pixel<CONFIG_T>(win, weights, group_ids, acc);
            } else {
                for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
                    mac_step<CONFIG_T>(win, weights, exps, signs, acc, r);
                }
            }
            window_emit<res_T, CONFIG_T>(res, acc);
        }
        window_advance<CONFIG_T>(w);
    }
#else
    #pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::block_factor
    const unsigned RF = CONFIG_T::reuse_factor;
    bool busy = false; // a gathered window is in the PE
    unsigned r = 0;
WindowSteps:
    for (unsigned t = 0; t < HP * WP + CONFIG_T::out_height * CONFIG_T::out_width * RF; t++) {
        #pragma HLS PIPELINE II=1
        if (!busy) {
            busy = window_position<data_T, CONFIG_T, IS_ADDER>(data, w, lbuf, win, gmult, gshift, exps, signs);
            r = 0;
            window_advance<CONFIG_T>(w);
        } else {
            if (IS_ADDER) {
                sad_step<CONFIG_T>(win, weights, group_ids, acc, r);
            } else {
                mac_step<CONFIG_T>(win, weights, exps, signs, acc, r);
            }
            if (r == RF - 1) {
                window_emit<res_T, CONFIG_T>(res, acc);
                busy = false;
            } else {
                r++;
            }
        }
    }
#endif
}

template <class data_T, class res_T, typename CONFIG_T>
void adder_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                      const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms],
                      const ap_uint<8> group_ids[CONFIG_T::n_filt], const typename CONFIG_T::gmult_t gmult[CONFIG_T::n_groups],
                      const typename CONFIG_T::gshift_t gshift[CONFIG_T::n_groups], const ap_int<8> *g_exps,
                      const ap_int<2> *g_signs) {
    window_stream<data_T, res_T, CONFIG_T, true>(data, res, weights, group_ids, gmult, gshift, g_exps, g_signs);
}

template <class data_T, class res_T, typename CONFIG_T>
void int_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                    const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms], const ap_int<8> *w_exps,
                    const ap_int<2> *w_signs) {
    window_stream<data_T, res_T, CONFIG_T, false>(data, res, weights, 0, 0, 0, w_exps, w_signs);
}

// ---- fused BN + ReLU + requantisation: one pixel per reuse_factor cycles, ceil(C/reuse_factor) lanes --
template <typename CONFIG_T, class in_T>
inline typename CONFIG_T::sum_t requant_term(in_T x, unsigned k, unsigned c, const typename CONFIG_T::mult_t *mult,
                                            const ap_int<8> *exps, const ap_int<2> *signs) {
    #pragma HLS INLINE
    const unsigned i = k * CONFIG_T::n_chan + c;
    return const_mult<typename CONFIG_T::sum_t, CONFIG_T::csd_terms>(x, mult[i], exps + i * CONFIG_T::csd_terms,
                                                                      signs + i * CONFIG_T::csd_terms);
}

template <typename CONFIG_T> inline typename CONFIG_T::out_elem_t requant_round_clip(typename CONFIG_T::sum_t v) {
    #pragma HLS INLINE
    if (CONFIG_T::shift > 0) {
        v += ((typename CONFIG_T::sum_t)1) << (CONFIG_T::shift - 1);
    }
    v = v >> CONFIG_T::shift; // arithmetic: floor division, so the rounding is half-up
    if (v < CONFIG_T::out_lo) {
        v = CONFIG_T::out_lo;
    } else if (v > CONFIG_T::out_hi) {
        v = CONFIG_T::out_hi;
    }
    return (typename CONFIG_T::out_elem_t)v;
}

// C channels over reuse_factor (R) cycles per pixel, ceil(C/R) lanes (channel c = r*lanes + b): the
// window layer feeding a requant delivers one pixel every RF cycles, so R <= RF lanes-sharing costs no
// throughput. One flattened II=1 loop of n_pixels*R steps: read at r == 0, write at r == R-1.
template <typename CONFIG_T, unsigned N_IN, class x1_T, class x2_T, class res_T>
inline void requant_lanes(const x1_T &x1, const x2_T &x2, unsigned r, res_T &out,
                          const typename CONFIG_T::mult_t *mult, const typename CONFIG_T::bias_t *bias,
                          const ap_int<8> *exps, const ap_int<2> *signs) {
    #pragma HLS INLINE
    const unsigned C = CONFIG_T::n_chan, L = CONFIG_T::n_lanes;
RequantLanes:
    for (unsigned b = 0; b < L; b++) {
        #pragma HLS UNROLL
        const unsigned c = (CONFIG_T::reuse_factor == 1) ? b : r * L + b;
        if (c < C) {
            typename CONFIG_T::sum_t v = bias[c];
            v += requant_term<CONFIG_T>(x1[c], 0, c, mult, exps, signs);
            if (N_IN > 1) {
                v += requant_term<CONFIG_T>(x2[c], 1, c, mult, exps, signs);
            }
            out[c] = requant_round_clip<CONFIG_T>(v);
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void requant_stream(hls::stream<data_T> &data, hls::stream<res_T> &res, const typename CONFIG_T::mult_t *mult,
                    const typename CONFIG_T::bias_t *bias, const ap_int<8> *exps, const ap_int<2> *signs) {
    const unsigned R = CONFIG_T::reuse_factor;
    data_T x;
    res_T out;
    PRAGMA_DATA_PACK(out)
    unsigned r = 0;
RequantSteps:
    for (unsigned t = 0; t < CONFIG_T::n_pixels * R; t++) {
        #pragma HLS PIPELINE II=1
        if (r == 0) {
            x = data.read();
        }
        requant_lanes<CONFIG_T, 1>(x, x, r, out, mult, bias, exps, signs);
        if (r == R - 1) {
            res.write(out);
            r = 0;
        } else {
            r++;
        }
    }
}

// Two inputs: the residual add shares the requantisation (mult[1] scales the shortcut).
template <class data1_T, class data2_T, class res_T, typename CONFIG_T>
void requant_add_stream(hls::stream<data1_T> &data1, hls::stream<data2_T> &data2, hls::stream<res_T> &res,
                        const typename CONFIG_T::mult_t *mult, const typename CONFIG_T::bias_t *bias,
                        const ap_int<8> *exps, const ap_int<2> *signs) {
    const unsigned R = CONFIG_T::reuse_factor;
    data1_T x1;
    data2_T x2;
    res_T out;
    PRAGMA_DATA_PACK(out)
    unsigned r = 0;
RequantAddSteps:
    for (unsigned t = 0; t < CONFIG_T::n_pixels * R; t++) {
        #pragma HLS PIPELINE II=1
        if (r == 0) {
            x1 = data1.read();
            x2 = data2.read();
        }
        requant_lanes<CONFIG_T, 2>(x1, x2, r, out, mult, bias, exps, signs);
        if (r == R - 1) {
            res.write(out);
            r = 0;
        } else {
            r++;
        }
    }
}

// ---- global sum pooling: one pixel per cycle, one output element per image -----------------------
template <class data_T, class res_T, typename CONFIG_T>
void global_sum_pool_stream(hls::stream<data_T> &data, hls::stream<res_T> &res) {
    typename CONFIG_T::accum_t acc[CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=acc complete
PoolInit:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
        acc[c] = 0;
    }
PoolPixels:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS PIPELINE II=1
        data_T x = data.read();
        for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
            #pragma HLS UNROLL
            acc[c] += x[c];
        }
    }
    res_T out;
    PRAGMA_DATA_PACK(out)
PoolEmit:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
        out[c] = acc[c];
    }
    res.write(out);
}

// ---- integer dense on one stream element (the pooled vector) --------------------------------------
template <class data_T, class res_T, typename CONFIG_T>
void int_dense_stream(hls::stream<data_T> &data, hls::stream<res_T> &res,
                      const typename CONFIG_T::weight_t weights[CONFIG_T::n_terms], const ap_int<8> *w_exps,
                      const ap_int<2> *w_signs) {
    const unsigned F = CONFIG_T::n_out;
    data_T x = data.read();
    typename CONFIG_T::accum_t acc[F];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    #pragma HLS ARRAY_RESHAPE variable=weights block factor=CONFIG_T::block_factor
DenseInit:
    for (unsigned f = 0; f < F; f++) {
        #pragma HLS UNROLL
        acc[f] = 0;
    }
DenseReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
        unsigned idx = r;
    DenseLanes:
        for (unsigned b = 0; b < CONFIG_T::block_factor; b++) {
            #pragma HLS UNROLL
            if (idx < CONFIG_T::n_terms) {
                unsigned f = idx % F;
                unsigned k = idx / F;
                acc[f] += const_mult<typename CONFIG_T::accum_t, CONFIG_T::csd_terms>(
                    x[k], weights[idx], w_exps + idx * CONFIG_T::csd_terms, w_signs + idx * CONFIG_T::csd_terms);
            }
            idx += CONFIG_T::reuse_factor;
        }
    }
    res_T out;
    PRAGMA_DATA_PACK(out)
DenseEmit:
    for (unsigned f = 0; f < F; f++) {
        #pragma HLS UNROLL
        out[f] = acc[f];
    }
    res.write(out);
}

} // namespace nnet

#endif
