// af_sum_pool: global sum pooling (QNet `global_sum_pool`): acc[c] = sum over the H*W pixel beats of an
// image of x[c]; one vector beat of C values of ACC_BITS per image (the 1/(H*W) lives in the next
// multiplier). ACC_BITS is the pool tensor's width, which holds the exact sum, so the modular sum is exact.
//
// One pixel per cycle. The result goes to its own output register, so the next image accumulates while
// the previous vector waits; only the last pixel of an image waits for that register to be free.
module af_sum_pool #(
    parameter integer H        = 2,
    parameter integer W        = 2,
    parameter integer C        = 1,
    parameter integer B        = 8,
    parameter integer ACC_BITS = 16,
    parameter integer SIGNED   = 0     // the input tensor is two's complement (a requant with LO < 0)
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     s_valid,
    output wire                     s_ready,
    input  wire [C*B-1:0]           s_data,
    output reg                      m_valid,
    input  wire                     m_ready,
    output reg  [C*ACC_BITS-1:0]    m_data
);
    localparam integer N  = H * W;
    localparam integer PW = (N > 1) ? $clog2(N) : 1;
    localparam [PW-1:0] LAST = PW'(N - 1);

    reg [PW-1:0] pix;                   // pixel of the current image
    reg [C*ACC_BITS-1:0] acc;

    wire last = (pix == LAST);
    assign s_ready = !last || !m_valid || m_ready;
    wire fire = s_valid && s_ready;

    genvar c;
    generate
        for (c = 0; c < C; c = c + 1) begin : g_chan
            wire [B-1:0] x = s_data[c*B +: B];
            wire [ACC_BITS-1:0] xe;
            if (ACC_BITS > B) begin : g_ext
                assign xe = {{(ACC_BITS - B){(SIGNED != 0) & x[B-1]}}, x};
            end else begin : g_trunc
                // an accumulator no wider than its input: the low bits are the exact (modular) sum
                assign xe = x[ACC_BITS-1:0];
            end
            wire [ACC_BITS-1:0] sum = ((pix == {PW{1'b0}}) ? {ACC_BITS{1'b0}} : acc[c*ACC_BITS +: ACC_BITS]) + xe;
            // datapath registers: no reset (reset clears control state only)
            always @(posedge clk) begin
                if (fire) acc[c*ACC_BITS +: ACC_BITS] <= sum;
                if (fire && last) m_data[c*ACC_BITS +: ACC_BITS] <= sum;
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            pix     <= {PW{1'b0}};
            m_valid <= 1'b0;
        end else begin
            if (fire) pix <= last ? {PW{1'b0}} : pix + 1'b1;
            if (fire && last) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
        end
    end
endmodule
