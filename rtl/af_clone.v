// af_clone: one stream fanned out to N (a residual fork). The input beat moves once every output has
// taken it; each output takes it exactly once.
//
// Why per-output `taken` flags instead of s_ready = &m_ready with m_valid = s_valid: on a valid/ready
// stream a beat moves on output i whenever m_valid[i] && m_ready[i], so a ready output must not see
// the same beat again while a slower sibling holds it back, and m_valid must not wait for m_ready (the
// contract). An output that has taken the beat drops its valid until the input moves.
// Ports: output i is m_valid[i], m_ready[i], m_data[(i+1)*W-1 : i*W] (the same data on every slice, so
// each output is wired like any other stream). Purely combinational on the data path (no latency).
module af_clone #(
    parameter integer W = 8,
    parameter integer N = 2
) (
    input  wire           clk,
    input  wire           rst,
    input  wire           s_valid,
    output wire           s_ready,
    input  wire [W-1:0]   s_data,
    output wire [N-1:0]   m_valid,
    input  wire [N-1:0]   m_ready,
    output wire [N*W-1:0] m_data
);
    reg  [N-1:0] taken;                     // output i has taken the current input beat
    wire [N-1:0] done = taken | m_ready;    // output i has it by the end of this cycle

    assign s_ready = &done;
    assign m_valid = {N{s_valid}} & ~taken;
    assign m_data  = {N{s_data}};

    always @(posedge clk) begin
        if (rst) begin
            taken <= {N{1'b0}};
        end else if (s_valid) begin
            // the beat moves (every output has it): start fresh; else remember who took it
            taken <= (&done) ? {N{1'b0}} : (taken | (m_valid & m_ready));
        end
    end
endmodule
