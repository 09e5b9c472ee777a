// af_sad_array: the adder (SAD) lanes of a window layer, time-multiplexed by RF (schedule.py's rule).
//
// Per accepted window beat (N_IN = K*K*Cin taps of XB bits, unsigned, tap order of af_window) it spends
// RF cycles; in cycle r lane (f, m), m in 0..M-1 with M = N_IN/RF, adds |a_{g(f)}[m*RF + r] - W[m*RF + r, f]|
// (schedule.lane_tap: the lane's filter and its tap block are wiring; only an RF:1 mux over r picks
// the tap). The M terms of a filter go through a bound-typed adder tree (level l is TB + l bits, TB
// the term width, as schedule.sad_widths / the HLS sad_tree), accumulate over r, and after cycle RF-1
// one beat of COUT unsigned ACC_BITS sums leaves (filter f in bits [(f+1)*ACC_BITS-1 : f*ACC_BITS]).
//
// Group input rescale (QNet adder2d): filter f reads input version g(f) = GROUP_OF field f;
// a_g = clip((x * GMULT_g + 2^(GSHIFT_g-1)) >>> GSHIFT_g, 0, 2^XB-1), identity when GMULT_g == 0. The
// constants are parameters, so each group's rescale is a constant multiplier (or no logic at all), and
// it is computed once per group and tap: in cycle r for the M taps in use, shared by every filter of
// the group (not per lane), so every tap of a window beat is rescaled exactly once per group.
//
// Weight ROM (ROM_FILE, `$readmemh`, RF words): word r holds, for filter f and lane m, W[m*RF + r, f]
// as WB-bit two's complement in bits [(f*M + m + 1)*WB - 1 : (f*M + m)*WB] (the HLS reshaped ROM:
// word r, field f*M + m). It is indexed by r only.
//
// Handshake: the beat is held in an input register for its RF cycles; the result goes to one output
// register, and the next window beat is accepted in the last cycle of the current one when that
// register is free (or being read), so the steady state is RF cycles per output pixel. A full output
// register holds only the last cycle (the accumulators keep their partial sums), never the input side
// of the earlier cycles.
module af_sad_array #(
    parameter integer N_IN = 9,
    parameter integer COUT = 4,
    parameter integer RF = 1,
    parameter integer XB = 4,               // activation bits (unsigned)
    parameter integer WB = 5,               // weight bits (two's complement)
    parameter integer ACC_BITS = 16,
    parameter integer G = 1,                // input groups
    parameter integer GIW = 1,              // bits of a group index in GROUP_OF
    parameter integer GMB = 2,              // bits of a group multiplier in GMULT (two's complement)
    parameter integer GSB = 1,              // bits of a group shift in GSHIFT
    parameter [COUT*GIW-1:0] GROUP_OF = 0,  // filter f: bits [(f+1)*GIW-1 : f*GIW]
    parameter [G*GMB-1:0] GMULT = 0,        // group g: bits [(g+1)*GMB-1 : g*GMB]; 0 = identity
    parameter [G*GSB-1:0] GSHIFT = 0,
    parameter ROM_FILE = ""
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     s_valid,
    output wire                     s_ready,
    input  wire [N_IN*XB-1:0]       s_data,
    output wire                     m_valid,
    input  wire                     m_ready,
    output wire [COUT*ACC_BITS-1:0] m_data
);
    localparam integer M = N_IN / RF;                                  // lanes per filter
    localparam integer RW = (RF > 1) ? $clog2(RF) : 1;
    localparam integer TB = ((XB > WB - 1) ? XB : WB - 1) + 1;         // |a - w| <= 2^XB - 1 + 2^(WB-1)
    localparam integer L = (M > 1) ? $clog2(M) : 0;                    // adder-tree levels
    localparam integer SW = TB + L;                                    // widest tree node (the root)
    localparam integer XHI = (1 << XB) - 1;
    // rescale product: (XB+1)-bit signed x times GMB-bit multiplier, plus a rounding constant below 2^(2^GSB)
    localparam integer PW0 = XB + GMB + 2;
    localparam integer PW = (PW0 > (1 << GSB) + 2) ? PW0 : (1 << GSB) + 2;

    // An RF that does not divide N_IN has no fixed lane-to-tap wiring (schedule.legal_reuse_factors):
    // stop elaboration with a message naming it (an undefined module is an error in every tool here).
    generate
        if (RF < 1 || N_IN % RF != 0) begin : g_bad_rf
            ERROR_af_lane_array_RF_must_divide_N_IN bad_rf ();
        end
    endgenerate

    // ---- control ---------------------------------------------------------------------------------------
    reg              busy, m_valid_r;
    reg [RW-1:0]     r;
    reg [N_IN*XB-1:0] xwin;
    reg [COUT*ACC_BITS-1:0] out_r;

    wire last     = (r == RW'(RF - 1));
    wire out_free = !m_valid_r || m_ready;
    wire adv      = busy && (!last || out_free);       // this cycle's lane terms are taken in
    wire take     = s_valid && s_ready;

    assign s_ready = !busy || (last && out_free);
    assign m_valid = m_valid_r;
    assign m_data  = out_r;

    always @(posedge clk) begin
        if (rst) begin
            busy <= 1'b0;
            r <= {RW{1'b0}};
            m_valid_r <= 1'b0;
        end else begin
            if (take) begin
                busy <= 1'b1;
                r <= {RW{1'b0}};
            end else if (adv) begin
                if (last) busy <= 1'b0;
                else r <= r + 1'b1;
            end
            if (adv && last) m_valid_r <= 1'b1;
            else if (m_ready) m_valid_r <= 1'b0;
        end
    end

    always @(posedge clk) begin
        if (take) xwin <= s_data;
    end

    // ---- weights: word r, field f*M + m ----------------------------------------------------------------
    reg [COUT*M*WB-1:0] rom [0:RF-1];
    initial begin
        if (ROM_FILE != "") $readmemh(ROM_FILE, rom);
    end
    wire [COUT*M*WB-1:0] wrow = rom[r];

    // ---- taps of this cycle, rescaled once per group -----------------------------------------------------
    wire [G*M*XB-1:0] a;          // group g, lane m: bits [(g*M+m+1)*XB-1 : (g*M+m)*XB]
    genvar g, m, f, l, i;
    generate
        for (m = 0; m < M; m = m + 1) begin : g_tap
            wire [RF*XB-1:0] block = xwin[m*RF*XB +: RF*XB];     // taps m*RF .. m*RF+RF-1
            wire [XB-1:0] x = block[r*XB +: XB];                 // the RF:1 mux over r
            for (g = 0; g < G; g = g + 1) begin : g_grp
                localparam signed [GMB-1:0] GM = GMULT[g*GMB +: GMB];
                localparam [GSB-1:0] GS = GSHIFT[g*GSB +: GSB];
                if (GM == 0) begin : g_id
                    assign a[(g*M+m)*XB +: XB] = x;
                end else begin : g_rs
                    localparam signed [PW-1:0] RND = (GS > 0) ? (PW'(1) <<< (GS - 1)) : PW'(0);
                    wire signed [PW-1:0] prod = $signed(PW'(x)) * $signed(PW'(GM)) + RND;
                    wire signed [PW-1:0] sh = prod >>> GS;
                    localparam signed [PW-1:0] HI = PW'(XHI);
                    assign a[(g*M+m)*XB +: XB] = sh[PW-1] ? {XB{1'b0}} : (sh > HI) ? XB'(XHI) : sh[XB-1:0];
                end
            end
        end

        // ---- lanes and one bound-typed tree per filter, accumulated over r ----------------------------------
        for (f = 0; f < COUT; f = f + 1) begin : g_filt
            localparam [GIW-1:0] GF = GROUP_OF[f*GIW +: GIW];
            // level l node i at node[l*M + i], TB + l significant bits (the bits above are zero)
            // Waiver (UNUSED): each level reads only the significant bits of the level below, so the
            // zero bits above them are never read. split_var: the levels are separate signals to the
            // simulator (one array would look like a combinational loop through itself).
            /* verilator lint_off UNUSED */
            wire [SW-1:0] node [0:(L+1)*M-1] /* verilator split_var */;
            /* verilator lint_on UNUSED */
            for (m = 0; m < M; m = m + 1) begin : g_lane
                wire signed [TB:0] d = $signed({1'b0, a[(GF*M+m)*XB +: XB]}) - $signed(wrow[(f*M+m)*WB +: WB]);
                wire [TB-1:0] mag = d[TB] ? TB'(-d) : TB'(d);     // |d| < 2^TB
                assign node[m] = SW'(mag);
            end
            for (l = 1; l <= L; l = l + 1) begin : g_lvl
                localparam integer NP = (M + (1 << (l - 1)) - 1) >> (l - 1);   // nodes of level l-1
                localparam integer NL = (M + (1 << l) - 1) >> l;               // nodes of level l
                for (i = 0; i < NL; i = i + 1) begin : g_node
                    if (2 * i + 1 < NP) begin : g_add
                        wire [TB+l-1:0] s = {1'b0, node[(l-1)*M + 2*i][TB+l-2:0]}
                                          + {1'b0, node[(l-1)*M + 2*i + 1][TB+l-2:0]};
                        assign node[l*M + i] = SW'(s);
                    end else begin : g_pass
                        assign node[l*M + i] = node[(l-1)*M + 2*i];
                    end
                end
                for (i = NL; i < M; i = i + 1) begin : g_unused
                    assign node[l*M + i] = {SW{1'b0}};
                end
            end
            wire [SW-1:0] psum = node[L*M];
            wire [ACC_BITS-1:0] total;
            if (RF > 1) begin : g_acc
                reg [ACC_BITS-1:0] acc;
                assign total = ((r == {RW{1'b0}}) ? {ACC_BITS{1'b0}} : acc) + ACC_BITS'(psum);
                always @(posedge clk) begin
                    if (adv && !last) acc <= total;
                end
            end else begin : g_noacc
                assign total = ACC_BITS'(psum);
            end
            always @(posedge clk) begin
                if (adv && last) out_r[f*ACC_BITS +: ACC_BITS] <= total;
            end
        end
    endgenerate
endmodule
