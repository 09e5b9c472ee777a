// af_window: line buffer + sliding window with zero padding and stride (the window layer's input side).
//
// Input: one pixel beat per accepted beat (C channels of B bits, raster order, images back to back).
// Output: one window beat per output pixel, K*K*C taps of B bits, tap t = (u*K + v)*C + c in bits
// [(t+1)*B-1 : t*B] (u: window row, v: window column, c: channel), i.e. the row-major flattening of the
// weight W[u,v,c,:], so a lane array indexes the window and its weight ROM with the same tap number.
//
// The walker visits the HP x WP padded positions of every image in raster order, one per cycle (the
// schedule's HP*WP walker steps, schedule.window_steps): a position inside the image takes one input
// beat, a padding position shifts in zeros without touching the input stream. Each step pushes one
// column (K rows at column jp) into the window registers; the K-1 older rows of that column come from
// the line buffer, a WP-deep memory whose word jp holds rows ip-K+1 .. ip-1 at column jp and is
// rewritten in the same step with rows ip-K+2 .. ip (so it needs no reset: every row a window uses was
// written earlier in the same image). A step that completes a strided window raises m_valid; the window
// registers ARE m_data, so the walker waits while a finished window has not been taken (no second copy
// of K*K*C*B bits), and the next image starts at the step after the last position of this one.
module af_window #(
    parameter integer H = 8,        // image height, width, channels, bits per channel
    parameter integer W = 8,
    parameter integer C = 1,
    parameter integer B = 8,
    parameter integer K = 3,        // square kernel
    parameter integer STRIDE = 1,
    parameter integer PAD_T = 1,
    parameter integer PAD_B = 1,
    parameter integer PAD_L = 1,
    parameter integer PAD_R = 1
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               s_valid,
    output wire               s_ready,
    input  wire [C*B-1:0]     s_data,
    output wire               m_valid,
    input  wire               m_ready,
    output wire [K*K*C*B-1:0] m_data
);
    localparam integer HP = H + PAD_T + PAD_B;
    localparam integer WP = W + PAD_L + PAD_R;
    localparam integer PB = C * B;                        // bits of one pixel (all channels)
    localparam integer LB = (K > 1) ? (K - 1) * PB : 1;   // line-buffer word: K-1 rows of one column
    localparam integer IW = $clog2(HP + 1);
    localparam integer JW = $clog2(WP + 1);
    localparam integer SW = (STRIDE > 1) ? $clog2(STRIDE) : 1;

    // walker state: padded position and the stride phases of the window's last row / column
    reg [IW-1:0] ip;
    reg [JW-1:0] jp;
    reg [SW-1:0] row_ph, col_ph;
    reg          m_valid_r;
    reg [K*K*PB-1:0] win;     // pixel (u, v) in bits [(u*K+v+1)*PB-1 : (u*K+v)*PB]

    // "at or past a constant" tests, written without comparing against a constant 0 (always true, and
    // the UNSIGNED lint warning) where a pad is 0 or K is 1
    wire past_top, past_left, row_full, col_full;
    generate
        if (PAD_T > 0) begin : g_pt
            assign past_top = (ip >= IW'(PAD_T));
        end else begin : g_npt
            assign past_top = 1'b1;
        end
        if (PAD_L > 0) begin : g_pl
            assign past_left = (jp >= JW'(PAD_L));
        end else begin : g_npl
            assign past_left = 1'b1;
        end
        if (K > 1) begin : g_kf
            assign row_full = (ip >= IW'(K - 1));         // K rows of this image are in
            assign col_full = (jp >= JW'(K - 1));
        end else begin : g_nkf
            assign row_full = 1'b1;
            assign col_full = 1'b1;
        end
    endgenerate
    wire in_image = past_top && (ip < IW'(PAD_T + H)) && past_left && (jp < JW'(PAD_L + W));
    wire free = !m_valid_r || m_ready;                    // the window registers may change this cycle
    wire step = free && (!in_image || s_valid);
    wire [PB-1:0] px = in_image ? s_data : {PB{1'b0}};
    wire last_col = (jp == JW'(WP - 1));
    wire last_row = (ip == IW'(HP - 1));
    wire complete = row_full && col_full && (row_ph == {SW{1'b0}}) && (col_ph == {SW{1'b0}});

    assign s_ready = free && in_image;
    assign m_valid = m_valid_r;
    assign m_data  = win;

    // the new column: rows ip-K+1 .. ip-1 from the line buffer, row ip from the input
    wire [K*PB-1:0] col;      // row u (0 = oldest) in bits [(u+1)*PB-1 : u*PB]
    generate
        if (K > 1) begin : g_lb
            reg [LB-1:0] lb [0:WP-1];
            wire [LB-1:0] old = lb[jp[JW-1:0]];
            assign col = {px, old};
            always @(posedge clk) begin
                if (step) lb[jp] <= col[K*PB-1:PB];      // drop the oldest row, keep the K-1 newest
            end
        end else begin : g_nolb
            assign col = px;
        end
    endgenerate

    // window: every pixel moves one column left, the new column enters at v = K-1
    integer u, v;
    always @(posedge clk) begin
        if (step) begin
            for (u = 0; u < K; u = u + 1) begin
                for (v = 0; v < K - 1; v = v + 1)
                    win[(u*K+v)*PB +: PB] <= win[(u*K+v+1)*PB +: PB];
                win[(u*K+K-1)*PB +: PB] <= col[u*PB +: PB];
            end
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            ip <= {IW{1'b0}};
            jp <= {JW{1'b0}};
            row_ph <= {SW{1'b0}};
            col_ph <= {SW{1'b0}};
            m_valid_r <= 1'b0;
        end else begin
            if (step) begin
                m_valid_r <= complete;
                if (last_col) begin
                    jp <= {JW{1'b0}};
                    col_ph <= {SW{1'b0}};
                    if (last_row) begin
                        ip <= {IW{1'b0}};                // next image, no gap cycle
                        row_ph <= {SW{1'b0}};
                    end else begin
                        ip <= ip + 1'b1;
                        if (row_full) row_ph <= (row_ph == SW'(STRIDE - 1)) ? {SW{1'b0}} : row_ph + 1'b1;
                    end
                end else begin
                    jp <= jp + 1'b1;
                    if (col_full) col_ph <= (col_ph == SW'(STRIDE - 1)) ? {SW{1'b0}} : col_ph + 1'b1;
                end
            end else if (m_ready) begin
                m_valid_r <= 1'b0;
            end
        end
    end
endmodule
