// af_fifo: valid/ready stream FIFO of DEPTH beats of W bits, with its occupancy on `count`.
//
// Why this shape: the generator puts one of these on every stream whose depth the schedule
// (schedule.join_fifo_depths + FIFO_SLACK) sets, and the harness reads `count` for high-water marks and
// to name a stalled stream; so `count` is a register (no combinational path from the stream handshakes),
// and s_ready / m_valid come from it alone (neither waits for the other side's valid or ready).
// Storage is a plain circular array read asynchronously at the read pointer, which keeps the data stable
// while m_valid && !m_ready and lets synthesis map small depths to LUT RAM / registers.
// A full FIFO does not accept in the cycle it is read (s_ready depends on count only), so DEPTH >= 2 is
// needed for one beat per cycle; DEPTH = 1 passes every other cycle.
module af_fifo #(
    parameter integer W = 8,
    parameter integer DEPTH = 2
) (
    input  wire                         clk,
    input  wire                         rst,
    input  wire                         s_valid,
    output wire                         s_ready,
    input  wire [W-1:0]                 s_data,
    output wire                         m_valid,
    input  wire                         m_ready,
    output wire [W-1:0]                 m_data,
    output reg  [$clog2(DEPTH+1)-1:0]   count
);
    // pointer width: at least one bit, so DEPTH = 1 still has a (constant-zero) pointer
    localparam integer AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam integer CW = $clog2(DEPTH + 1);
    localparam [AW-1:0] LAST = AW'(DEPTH - 1);
    localparam [CW-1:0] FULL = CW'(DEPTH);

    reg [W-1:0]  mem [0:DEPTH-1];
    reg [AW-1:0] wr_ptr, rd_ptr;

    wire push = s_valid && s_ready;
    wire pop  = m_valid && m_ready;

    assign s_ready = (count != FULL);
    assign m_valid = (count != {CW{1'b0}});
    assign m_data  = mem[rd_ptr];

    // datapath: no reset (the contract: reset clears control state only)
    always @(posedge clk) begin
        if (push) mem[wr_ptr] <= s_data;
    end

    always @(posedge clk) begin
        if (rst) begin
            wr_ptr <= {AW{1'b0}};
            rd_ptr <= {AW{1'b0}};
            count  <= {CW{1'b0}};
        end else begin
            if (push) wr_ptr <= (wr_ptr == LAST) ? {AW{1'b0}} : wr_ptr + 1'b1;
            if (pop)  rd_ptr <= (rd_ptr == LAST) ? {AW{1'b0}} : rd_ptr + 1'b1;
            if (push && !pop)      count <= count + 1'b1;
            else if (pop && !push) count <= count - 1'b1;
        end
    end
endmodule
