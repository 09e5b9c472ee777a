// af_dense: integer dense on one vector beat per image (QNet `dense`): acc[f] = sum_k x[k] * W[k, f],
// signed products, no bias (the QNet dense has none).
//
// Time-multiplexed like the HLS dense (hls4ml dense_resource, RF | N_IN): M = N_IN / RF lanes per
// filter; in cycle r = 0 .. RF-1 lane m of filter f takes input m*RF + r, so a lane's input is an RF:1
// mux with m fixed, and its weight comes from ROM word r. ACC_BITS is the output tensor's width, which
// holds the exact result, so every partial sum is computed modulo 2^ACC_BITS and the result is exact.
//
// Weight ROM (ROM_FILE, $readmemh, RF words): word r holds, for filter f and lane m, W[m*RF + r, f] as
// WB-bit two's complement in bits [(f*M + m + 1)*WB - 1 : (f*M + m)*WB] (word r, field f*M + m: the
// layout of af_sad_array's ROM and of the HLS reshaped weights).
//
// Handshake: the input beat is latched (s_ready while idle), RF cycles accumulate, the sums go to an
// output register; the next vector is taken in the cycle the last one finishes, so back to back a beat
// moves every RF cycles. If the output register is still full at cycle RF-1 the array holds there.
module af_dense #(
    parameter integer N_IN     = 4,
    parameter integer COUT     = 2,
    parameter integer RF       = 1,
    parameter integer XB       = 8,
    parameter integer X_SIGNED = 1,   // the input tensor (a pool accumulator) is two's complement
    parameter integer WB       = 8,
    parameter integer ACC_BITS = 20,
    parameter         ROM_FILE = ""
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     s_valid,
    output wire                     s_ready,
    input  wire [N_IN*XB-1:0]       s_data,
    output reg                      m_valid,
    input  wire                     m_ready,
    output reg  [COUT*ACC_BITS-1:0] m_data
);
    localparam integer M  = N_IN / RF;
    localparam integer RW = (RF > 1) ? $clog2(RF) : 1;
    localparam [RW-1:0] R_LAST = RW'(RF - 1);

    // filled only by $readmemh: without ROM_FILE (the default parameters, for lint and parse alone) it is
    // never written, which is what UNDRIVEN reports
    /* verilator lint_off UNDRIVEN */
    reg [COUT*M*WB-1:0] rom [0:RF-1];
    /* verilator lint_on UNDRIVEN */
    generate
        if (ROM_FILE != "") begin : g_rom
            initial $readmemh(ROM_FILE, rom);
        end
    endgenerate

    reg              busy;
    reg [RW-1:0]     r;
    reg [N_IN*XB-1:0] x;
    reg [COUT*ACC_BITS-1:0] acc;

    wire last = (r == R_LAST);
    // a cycle of the array runs unless the result has nowhere to go
    wire step = busy && (!last || !m_valid || m_ready);
    wire done = step && last;
    assign s_ready = !busy || done;
    wire fire = s_valid && s_ready;

    wire [COUT*M*WB-1:0] word = rom[r];

    // the sum of a filter's M lane products, modulo 2^ACC_BITS (synthesis builds the adder tree)
    function automatic [ACC_BITS-1:0] lane_sum(input [M*ACC_BITS-1:0] v);
        integer i;
        begin
            lane_sum = {ACC_BITS{1'b0}};
            for (i = 0; i < M; i = i + 1) lane_sum = lane_sum + v[i*ACC_BITS +: ACC_BITS];
        end
    endfunction

    genvar f, m;
    generate
        for (f = 0; f < COUT; f = f + 1) begin : g_filt
            wire [M*ACC_BITS-1:0] prods;       // lane products, extended to ACC_BITS
            for (m = 0; m < M; m = m + 1) begin : g_lane
                // lane (f, m) in cycle r: input m*RF + r (an RF:1 mux), weight word r field f*M + m
                wire [XB-1:0] xv = x[(m*RF + 32'(r))*XB +: XB];
                wire signed [WB-1:0] wv = word[(f*M + m)*WB +: WB];
                wire signed [XB:0] xs = {(X_SIGNED != 0) & xv[XB-1], xv};
                wire signed [XB+WB:0] p = xs * wv;
                wire [ACC_BITS-1:0] pe;
                if (ACC_BITS > XB + WB + 1) begin : g_ext
                    assign pe = {{(ACC_BITS - XB - WB - 1){p[XB+WB]}}, p};
                end else begin : g_trunc
                    // an accumulator no wider than the product: the low bits are the exact (modular) sum
                    /* verilator lint_off UNUSEDSIGNAL */
                    wire [XB+WB:0] pu = p;
                    /* verilator lint_on UNUSEDSIGNAL */
                    assign pe = pu[ACC_BITS-1:0];
                end
                assign prods[m*ACC_BITS +: ACC_BITS] = pe;
            end
            wire [ACC_BITS-1:0] sum = ((r == {RW{1'b0}}) ? {ACC_BITS{1'b0}} : acc[f*ACC_BITS +: ACC_BITS]) + lane_sum(prods);
            // datapath registers: no reset (reset clears control state only)
            always @(posedge clk) begin
                if (step) acc[f*ACC_BITS +: ACC_BITS] <= sum;
                if (done) m_data[f*ACC_BITS +: ACC_BITS] <= sum;
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (fire) x <= s_data;
    end

    always @(posedge clk) begin
        if (rst) begin
            busy    <= 1'b0;
            r       <= {RW{1'b0}};
            m_valid <= 1'b0;
        end else begin
            if (step) r <= last ? {RW{1'b0}} : r + 1'b1;
            if (fire) busy <= 1'b1;
            else if (done) busy <= 1'b0;
            if (done) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
        end
    end
endmodule
