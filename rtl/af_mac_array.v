// af_mac_array: the integer MAC lanes of a window layer (the first convolution), with exactly the lane
// rule, ROM layout and handshake of af_sad_array: per window beat RF cycles; in cycle r lane (f, m),
// m in 0..M-1 with M = N_IN/RF, adds x[m*RF + r] * W[m*RF + r, f]; the M products of a filter are summed,
// accumulated over r, and one beat of COUT signed ACC_BITS sums leaves (filter f in bits
// [(f+1)*ACC_BITS-1 : f*ACC_BITS], two's complement).
//
// Taps are XB-bit two's complement (the int8 network input) unless X_SIGNED = 0. Sums are formed modulo
// 2^ACC_BITS: the generator sizes ACC_BITS from the exact bound (QNet.infer_widths), so the final sum fits
// and any wrap of a partial sum cancels; no wider adder is needed.
//
// Weight ROM (ROM_FILE, `$readmemh`, RF words): word r holds W[m*RF + r, f] as WB-bit two's complement in
// bits [(f*M + m + 1)*WB - 1 : (f*M + m)*WB], indexed by r only.
//
// Handshake: input register held for RF cycles, one output register, the next beat accepted in the last
// cycle when the output register is free or being read: RF cycles per output pixel in steady state.
module af_mac_array #(
    parameter integer N_IN = 9,
    parameter integer COUT = 4,
    parameter integer RF = 1,
    parameter integer XB = 8,
    parameter integer WB = 4,
    parameter integer ACC_BITS = 16,
    parameter integer X_SIGNED = 1,
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
    localparam integer M = N_IN / RF;
    localparam integer RW = (RF > 1) ? $clog2(RF) : 1;

    // An RF that does not divide N_IN has no fixed lane-to-tap wiring (schedule.legal_reuse_factors):
    // stop elaboration with a message naming it (an undefined module is an error in every tool here).
    generate
        if (RF < 1 || N_IN % RF != 0) begin : g_bad_rf
            ERROR_af_lane_array_RF_must_divide_N_IN bad_rf ();
        end
    endgenerate

    // ---- control (as af_sad_array) ----------------------------------------------------------------------
    reg              busy, m_valid_r;
    reg [RW-1:0]     r;
    reg [N_IN*XB-1:0] xwin;
    reg [COUT*ACC_BITS-1:0] out_r;

    wire last     = (r == RW'(RF - 1));
    wire out_free = !m_valid_r || m_ready;
    wire adv      = busy && (!last || out_free);
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

    reg [COUT*M*WB-1:0] rom [0:RF-1];
    initial begin
        if (ROM_FILE != "") $readmemh(ROM_FILE, rom);
    end
    wire [COUT*M*WB-1:0] wrow = rom[r];

    // ---- taps of this cycle: lane m reads tap m*RF + r (an RF:1 mux), as an (XB+1)-bit signed value ----
    localparam integer PB = XB + 1 + WB;              // one exact product
    wire [M*(XB+1)-1:0] xs;
    genvar m, f;
    generate
        for (m = 0; m < M; m = m + 1) begin : g_tap
            wire [RF*XB-1:0] block = xwin[m*RF*XB +: RF*XB];
            wire [XB-1:0] x = block[r*XB +: XB];
            assign xs[m*(XB+1) +: XB+1] = {(X_SIGNED != 0) ? x[XB-1] : 1'b0, x};
        end

        for (f = 0; f < COUT; f = f + 1) begin : g_filt
            // exact (XB+1) x WB signed products, sign-extended into the modulo-2^ACC_BITS sum
            reg [ACC_BITS-1:0] psum;
            integer k;
            always @(*) begin
                psum = {ACC_BITS{1'b0}};
                for (k = 0; k < M; k = k + 1)
                    psum = psum + ACC_BITS'($signed(PB'($signed(xs[k*(XB+1) +: XB+1]) * $signed(wrow[(f*M+k)*WB +: WB]))));
            end
            wire [ACC_BITS-1:0] total;
            if (RF > 1) begin : g_acc
                reg [ACC_BITS-1:0] acc;
                assign total = ((r == {RW{1'b0}}) ? {ACC_BITS{1'b0}} : acc) + psum;
                always @(posedge clk) begin
                    if (adv && !last) acc <= total;
                end
            end else begin : g_noacc
                assign total = psum;
            end
            always @(posedge clk) begin
                if (adv && last) out_r[f*ACC_BITS +: ACC_BITS] <= total;
            end
        end
    endgenerate
endmodule
