// af_axis_out: output beats of C values -> DMA words (AXI4-Stream m_axis_*), packing exactly
// flow/driver/packing.py `output_layout`: per image the VALUES integers in flat order, in lanes of
// LANE_BITS = lane_bits_for(max(8, VALUE_BITS)) (logit lanes are at least a byte, so the board's CPU
// reads them directly), lane 0 in the low bits, two's complement at lane width (sign-extended when
// SIGNED); every image starts on a fresh word, its last word zero-padded and carrying TLAST.
// VALUE_BITS is the tensor's width, the width of a value in the input beat (rtl/README.md).
//
// Why a value buffer: beats (C values) and words (LANES values) need not align (10 logits, 8 lanes), so
// beats go into a buffer of LANES + C lane-wide values and words come out of its head; a beat is taken
// while at most LANES values wait.
module af_axis_out #(
    parameter integer VALUES     = 10,   // integers per image; a multiple of C
    parameter integer VALUE_BITS = 16,
    parameter integer SIGNED     = 1,
    parameter integer WORD_BITS  = 64,
    parameter integer C          = 10    // values per input beat
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     s_valid,
    output wire                     s_ready,
    input  wire [C*VALUE_BITS-1:0]  s_data,
    output wire                     m_axis_tvalid,
    input  wire                     m_axis_tready,
    output wire [WORD_BITS-1:0]     m_axis_tdata,
    output wire                     m_axis_tlast
);
    // packing.lane_bits_for: the smallest power of two >= the value width
    function automatic integer lane_bits_for(input integer bits);
        integer l;
        begin
            l = 1;
            while (l < bits) l = l * 2;
            lane_bits_for = l;
        end
    endfunction

    localparam integer LANE_BITS = lane_bits_for(VALUE_BITS > 8 ? VALUE_BITS : 8);
    localparam integer LANES     = WORD_BITS / LANE_BITS;
    localparam integer TAIL      = VALUES - ((VALUES - 1) / LANES) * LANES;   // values in an image's last word
    localparam integer BUF_N     = LANES + C;
    localparam integer NW        = $clog2(BUF_N + 1);
    localparam integer LW        = $clog2(VALUES + 1);
    localparam integer LB        = LANE_BITS;
    localparam [NW-1:0] C_N      = NW'(C);
    localparam [NW-1:0] ROOM     = NW'(LANES);         // take a beat while at most LANES values wait
    localparam [LW-1:0] LANES_L  = LW'(LANES);
    localparam [LW-1:0] VALUES_L = LW'(VALUES);

    reg [BUF_N*LB-1:0] buffer;          // lane-wide values in arrival order, the oldest in the low bits
    reg [NW-1:0]       cnt;
    reg [LW-1:0]       left;            // values of the current image not yet sent in a word

    wire final_word = (left <= LANES_L);
    wire [NW-1:0] take = final_word ? NW'(TAIL) : NW'(LANES);
    assign m_axis_tvalid = (cnt >= take);
    assign m_axis_tlast  = final_word;
    wire pop = m_axis_tvalid && m_axis_tready;

    assign s_ready = (cnt <= ROOM);
    wire push = s_valid && s_ready;

    // the word: the first `take` values, the lanes after them zero (the last word of an image is padded)
    genvar l, i;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_lane
            assign m_axis_tdata[l*LB +: LB] = (NW'(l) < take) ? buffer[l*LB +: LB] : {LB{1'b0}};
        end
        if (WORD_BITS > LANES * LB) begin : g_pad
            assign m_axis_tdata[WORD_BITS-1:LANES*LB] = {(WORD_BITS - LANES * LB){1'b0}};
        end
    endgenerate

    wire [BUF_N*LB-1:0] shifted = !pop ? buffer : final_word ? (buffer >> (TAIL * LB)) : (buffer >> (LANES * LB));
    wire [NW-1:0]       base    = pop ? cnt - take : cnt;

    generate
        for (i = 0; i < BUF_N; i = i + 1) begin : g_slot
            // slot i receives value i - base of the beat
            wire [NW-1:0] j = NW'(i) - base;
            wire fill = push && (NW'(i) >= base) && (j < C_N);
            wire [VALUE_BITS-1:0] v = s_data[((j < C_N) ? 32'(j) : 0) * VALUE_BITS +: VALUE_BITS];
            wire [LB-1:0] ve;
            if (LB > VALUE_BITS) begin : g_ext
                assign ve = {{(LB - VALUE_BITS){(SIGNED != 0) & v[VALUE_BITS-1]}}, v};
            end else begin : g_same
                assign ve = v;
            end
            // datapath register: no reset (reset clears control state only)
            always @(posedge clk) begin
                buffer[i*LB +: LB] <= fill ? ve : shifted[i*LB +: LB];
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            cnt  <= {NW{1'b0}};
            left <= VALUES_L;
        end else begin
            cnt <= base + (push ? C_N : {NW{1'b0}});
            if (pop) left <= final_word ? VALUES_L : left - LANES_L;
        end
    end
endmodule
