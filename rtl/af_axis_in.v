// af_axis_in: DMA words (AXI4-Stream s_axis_*) -> pixel beats of C values, unpacking exactly
// flow/driver/packing.py (the one definition of the word layout): per image the VALUES integers in the
// network's flat order (H, W, C), in lanes of LANE_BITS = lane_bits_for(VALUE_BITS) (the value width
// rounded up to a power of two), lane 0 in the low bits of a WORD_BITS word, two's complement at lane
// width; every image starts on a fresh word and the last word of an image is zero-padded.
// A pixel beat carries C values, value c in bits [(c+1)*VALUE_BITS-1 : c*VALUE_BITS] (rtl/README.md);
// the low VALUE_BITS bits of a lane are the value's two's complement at VALUE_BITS, so signed and
// unsigned values unpack alike (SIGNED only documents the tensor).
//
// Why a value buffer: a pixel (C values) and a word (LANES values) need not align (CIFAR: 3 values per
// pixel, 8 per word), so words go into a buffer of LANES + 2*C values and pixels come out of its head;
// a word is taken while at most 2*C values wait, which keeps one pixel per cycle going whenever the DMA
// supplies words at the rate the pixels need (LANES >= C: one pixel every cycle).
//
// TLAST (the status bits of hls_templates/axi_top.cpp):
//   status[0] (STATUS_EARLY_TLAST = 1): a word with TLAST came before the last word of an image; the rest
//             of that image is read as zeros (the DMA has nothing more to send; waiting would hang), and
//             the next word starts a fresh image. Sticky until reset.
//   status[1] (STATUS_NO_TLAST = 2): always 0 here. The HLS top knows the call's n_images and flags a
//             call's final word without TLAST; this stream has no call length, so TLAST is accepted on
//             the last word of any image and its absence there is legal (images back to back in one
//             DMA transfer carry TLAST on the final image only).
module af_axis_in #(
    parameter integer VALUES     = 12,   // integers per image (H*W*C); a multiple of C
    parameter integer VALUE_BITS = 8,
    // part of the contract (the generator passes every tensor's signedness alike), but unpacking does
    // not depend on it: see above
    /* verilator lint_off UNUSEDPARAM */
    parameter integer SIGNED     = 1,
    /* verilator lint_on UNUSEDPARAM */
    parameter integer WORD_BITS  = 64,
    parameter integer C          = 3     // channels per pixel beat
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     s_axis_tvalid,
    output wire                     s_axis_tready,
    input  wire [WORD_BITS-1:0]     s_axis_tdata,
    input  wire                     s_axis_tlast,
    output wire                     m_valid,
    input  wire                     m_ready,
    output wire [C*VALUE_BITS-1:0]  m_data,
    output wire [1:0]               status
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

    localparam integer LANE_BITS = lane_bits_for(VALUE_BITS);
    localparam integer LANES     = WORD_BITS / LANE_BITS;
    localparam integer TAIL      = VALUES - ((VALUES - 1) / LANES) * LANES;   // values in an image's last word
    localparam integer BUF_N     = LANES + 2 * C;
    localparam integer NW        = $clog2(BUF_N + 1);
    localparam integer LW        = $clog2(VALUES + 1);
    localparam integer VB        = VALUE_BITS;
    localparam [NW-1:0] C_N      = NW'(C);
    localparam [NW-1:0] ROOM     = NW'(2 * C);         // take a word while at most this many values wait
    localparam [LW-1:0] LANES_L  = LW'(LANES);
    localparam [LW-1:0] VALUES_L = LW'(VALUES);

    reg [BUF_N*VB-1:0] buffer;          // values in arrival order, the oldest in the low bits
    reg [NW-1:0]       cnt;
    reg [LW-1:0]       left;            // values of the current image still to come from words
    reg                zfill;           // after an early TLAST: the rest of the image is zeros
    reg                early;

    assign status = {1'b0, early};

    wire final_word = (left <= LANES_L);                // this word ends its image
    wire [NW-1:0] take = final_word ? NW'(TAIL) : NW'(LANES);
    wire room = (cnt <= ROOM);
    assign s_axis_tready = room && !zfill;
    wire real_push = s_axis_tvalid && s_axis_tready;
    wire push = real_push || (zfill && room);
    wire [WORD_BITS-1:0] word = zfill ? {WORD_BITS{1'b0}} : s_axis_tdata;

    assign m_valid = (cnt >= C_N);
    assign m_data  = buffer[C*VB-1:0];
    wire pop = m_valid && m_ready;

    // the buffer after the pop, and where the word's values go
    wire [BUF_N*VB-1:0] shifted = pop ? (buffer >> (C * VB)) : buffer;
    wire [NW-1:0]       base    = pop ? cnt - C_N : cnt;

    genvar i;
    generate
        for (i = 0; i < BUF_N; i = i + 1) begin : g_slot
            // slot i receives lane i - base of the word (when that lane is one of the image's values)
            wire [NW-1:0] j = NW'(i) - base;
            wire fill = push && (NW'(i) >= base) && (j < take);
            /* verilator lint_off UNUSEDSIGNAL */
            wire [LANE_BITS-1:0] lane = word[(32'(j) % LANES) * LANE_BITS +: LANE_BITS];  // upper lane bits: sign/pad only
            /* verilator lint_on UNUSEDSIGNAL */
            // datapath register: no reset (reset clears control state only)
            always @(posedge clk) begin
                buffer[i*VB +: VB] <= fill ? lane[VB-1:0] : shifted[i*VB +: VB];
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            cnt   <= {NW{1'b0}};
            left  <= VALUES_L;
            zfill <= 1'b0;
            early <= 1'b0;
        end else begin
            cnt <= base + (push ? take : {NW{1'b0}});
            if (push) begin
                left <= final_word ? VALUES_L : left - LANES_L;
                if (final_word) zfill <= 1'b0;
                else if (real_push && s_axis_tlast) begin
                    zfill <= 1'b1;
                    early <= 1'b1;
                end
            end
        end
    end
endmodule
