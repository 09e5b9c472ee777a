// af_requant: the QNet requant of C channels (flow/qnet.py, flow/golden.py `requantize`):  v[c] = sum_k in_k[c] * mult[k][c] + bias[c];  out[c] = clip((v + 2^(SHIFT-1)) >>> SHIFT,
// LO, HI). This one op is BN + ReLU (LO = 0) + requantisation; with N_INPUTS = 2 the second input stream
// (s1_*) is the residual add, its beat consumed together with the first one.
//
// Widths: SUM_BITS is schedule.requant_sum_bits (every partial sum of v, rounding included, fits), so the
// whole sum is computed modulo 2^SUM_BITS and is still exact; only the clip compares on a width that also
// holds LO and HI (an all-zero multiplier can make SUM_BITS narrower than the output).
//
// Constants: a $readmemh ROM of C words (ROM_FILE), word c for channel c, fields from bit 0 up:
//   bias[c]                                         BIAS_BITS, two's complement
//   CSD = 0: mult[k][c] for k = 0 .. N_INPUTS-1      MULT_BITS each, two's complement
//   CSD = 1: for k = 0 .. N_INPUTS-1, for t = 0 .. CSD_TERMS-1, one term of mult[k][c]:
//            exponent (EXP_BITS, unsigned) then sign (2 bits: 01 = +1, 11 = -1, 00 = unused term)
//            i.e. term (k, t) at bit BIAS_BITS + (k*CSD_TERMS + t)*(EXP_BITS + 2)
//   The terms are schedule.csd_tables(mult) (flow/csd.py), CSD_TERMS = schedule.csd_terms(mult) over the
//   whole [N_INPUTS, C] array, exactly the tables the HLS shift-add pass writes.
// The ROM is the same for every REUSE: lane b reads word b*REUSE + q in cycle q.
//
// Lanes (schedule.requant_reuse, as the HLS requant_cycle): REUSE = 1 gives every channel its own lane
// and one beat per cycle; REUSE = R > 1 gives C/R lanes, lane b on channel b*R + q in cycle q, R cycles
// per beat. With REUSE = 1 every lane reads its ROM word at a constant address, so synthesis folds the
// ROM into constants: with CSD = 1 the shifts become wiring and only adders remain (zero DSP); with
// CSD = 0 the product is a `*` that yosys may map to a DSP (it maps multipliers before it folds the ROM).
// With REUSE > 1 a lane's constants are an R:1 selection by q (as the HLS reshaped tables), so a CSD
// term's shift is selected too.
//
// Handshake: a beat moves in when every input has one and the datapath can take it (s_ready / s1_ready
// wait for the other input's valid, never for their own); one output register.
module af_requant #(
    parameter integer C          = 1,
    parameter integer N_INPUTS   = 1,   // 1, or 2 with the residual input s1
    parameter integer IN_BITS    = 8,
    parameter integer IN_SIGNED  = 0,   // accumulators of an adder layer are >= 0, of a conv signed
    parameter integer IN1_BITS   = 8,
    parameter integer IN1_SIGNED = 0,
    parameter integer OUT_BITS   = 8,
    parameter integer OUT_SIGNED = 0,
    parameter integer SHIFT      = 0,
    parameter integer LO         = (OUT_SIGNED != 0) ? -(1 << (OUT_BITS - 1)) : 0,
    parameter integer HI         = (OUT_SIGNED != 0) ? (1 << (OUT_BITS - 1)) - 1 : (1 << OUT_BITS) - 1,
    parameter integer SUM_BITS   = 32,
    parameter integer MULT_BITS  = 16,
    parameter integer BIAS_BITS  = 16,
    parameter integer REUSE      = 1,   // cycles per beat (schedule.requant_reuse), divides C
    parameter integer CSD        = 0,
    parameter integer CSD_TERMS  = 1,
    parameter integer EXP_BITS   = 6,
    parameter         ROM_FILE   = ""
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     s_valid,
    output wire                     s_ready,
    input  wire [C*IN_BITS-1:0]     s_data,
    input  wire                     s1_valid,
    output wire                     s1_ready,
    input  wire [C*IN1_BITS-1:0]    s1_data,
    output reg                      m_valid,
    input  wire                     m_ready,
    output reg  [C*OUT_BITS-1:0]    m_data
);
    localparam integer TERM_BITS = EXP_BITS + 2;
    // the multiplier field's width in the word: none with CSD (the plain product below is then dead code,
    // and a width of 1 keeps its select inside the word)
    localparam integer MB        = (CSD != 0) ? 1 : MULT_BITS;
    localparam integer ROM_BITS  = BIAS_BITS + N_INPUTS * (CSD != 0 ? CSD_TERMS * TERM_BITS : MULT_BITS);
    // the clip's compare width: v itself, and LO/HI with a sign bit
    localparam integer CMP_BITS  = (SUM_BITS > OUT_BITS + 1) ? SUM_BITS : OUT_BITS + 1;
    localparam signed [CMP_BITS-1:0] LO_C = CMP_BITS'(LO);
    localparam signed [CMP_BITS-1:0] HI_C = CMP_BITS'(HI);
    localparam signed [SUM_BITS-1:0] RND  = (SHIFT > 0) ? SUM_BITS'(64'd1 << (SHIFT - 1)) : {SUM_BITS{1'b0}};

    // filled only by $readmemh: without ROM_FILE (the default parameters, for lint and parse alone) it is
    // never written, which is what UNDRIVEN reports
    /* verilator lint_off UNDRIVEN */
    reg [ROM_BITS-1:0] rom [0:C-1];
    /* verilator lint_on UNDRIVEN */
    generate
        if (ROM_FILE != "") begin : g_rom
            initial $readmemh(ROM_FILE, rom);
        end
    endgenerate

    localparam integer L  = C / REUSE;                      // lanes
    localparam integer QW = (REUSE > 1) ? $clog2(REUSE) : 1;

    wire both = s_valid && (N_INPUTS < 2 || s1_valid);
    wire take;                          // the datapath can take a new beat this cycle
    wire step;                          // a requant cycle runs (writes its channels into m_data)
    wire [QW-1:0] q;                    // which cycle: lane b handles channel b*REUSE + q
    wire [C*IN_BITS-1:0]  src0;         // the beat the lanes read
    wire [C*IN1_BITS-1:0] src1;
    wire fire = both && take;
    assign s_ready  = take && (N_INPUTS < 2 || s1_valid);
    assign s1_ready = take && s_valid && (N_INPUTS > 1);

    // x * mult (CSD = 0) or the sum of x << e over the CSD terms of mult (CSD = 1), modulo 2^SUM_BITS;
    // x arrives already extended to SUM_BITS, so every shift and product below is exact modulo 2^SUM_BITS.
    function automatic signed [SUM_BITS-1:0] const_mult(input signed [SUM_BITS-1:0] x,
                                                        input [ROM_BITS-1:0] word, input integer k);
        integer t;
        reg [EXP_BITS-1:0] e;
        reg [1:0] sg;
        reg signed [SUM_BITS-1:0] acc;
        reg signed [MB-1:0] m;
        begin
            acc = {SUM_BITS{1'b0}};
            if (CSD != 0) begin
                for (t = 0; t < CSD_TERMS; t = t + 1) begin
                    e  = word[BIAS_BITS + (k * CSD_TERMS + t) * TERM_BITS +: EXP_BITS];
                    sg = word[BIAS_BITS + (k * CSD_TERMS + t) * TERM_BITS + EXP_BITS +: 2];
                    if (sg == 2'b01) acc = acc + (x <<< e);
                    else if (sg == 2'b11) acc = acc - (x <<< e);
                end
            end else begin
                m = word[BIAS_BITS + k * MB +: MB];
                acc = x * SUM_BITS'(m);
            end
            const_mult = acc;
        end
    endfunction

    // a value of `bits` bits (two's complement when sgn) extended to SUM_BITS; SUM_BITS may be narrower
    // than the input (tiny multipliers), then the low bits are all the modular sum needs
    function automatic signed [SUM_BITS-1:0] extend(input [63:0] raw, input integer bits, input integer sgn);
        reg [63:0] v;
        begin
            v = raw & ((64'd1 << bits) - 64'd1);
            if (sgn != 0 && raw[bits - 1]) v = v | ~((64'd1 << bits) - 64'd1);
            extend = v[SUM_BITS-1:0];
        end
    endfunction

    generate
        if (REUSE == 1) begin : g_par
            // every channel has its lane: the beat goes straight through to the output register
            assign take = !m_valid || m_ready;
            assign step = fire;
            assign q    = {QW{1'b0}};
            assign src0 = s_data;
            assign src1 = s1_data;
            always @(posedge clk) begin
                if (rst) m_valid <= 1'b0;
                else if (take) m_valid <= both;
            end
        end else begin : g_tm
            // time-multiplexed (schedule.requant_reuse): the beat is latched and C/REUSE lanes take REUSE
            // cycles. Cycle q writes channels b*REUSE + q of m_data, so cycle 0 waits until the previous
            // result has left (it then overwrites a beat that is being read, never one that waits).
            reg [QW-1:0] qr;
            reg busy;
            reg [C*IN_BITS-1:0]  x0r;
            reg [C*IN1_BITS-1:0] x1r;
            wire done = step && (qr == QW'(REUSE - 1));
            assign step = busy && (!m_valid || m_ready);
            assign take = !busy || done;
            assign q    = qr;
            assign src0 = x0r;
            assign src1 = x1r;
            // datapath registers: no reset (reset clears control state only)
            always @(posedge clk) begin
                if (fire) begin
                    x0r <= s_data;
                    x1r <= s1_data;
                end
            end
            always @(posedge clk) begin
                if (rst) begin
                    busy    <= 1'b0;
                    qr      <= {QW{1'b0}};
                    m_valid <= 1'b0;
                end else begin
                    if (step) qr <= done ? {QW{1'b0}} : qr + 1'b1;
                    if (fire) busy <= 1'b1;
                    else if (done) busy <= 1'b0;
                    if (done) m_valid <= 1'b1;
                    else if (m_ready) m_valid <= 1'b0;
                end
            end
        end
    endgenerate

    wire [L*OUT_BITS-1:0] ylanes;
    genvar b, c;
    generate
        for (b = 0; b < L; b = b + 1) begin : g_lane
            // lane b in cycle q: channel b*REUSE + q, an REUSE:1 mux; with REUSE = 1 constant indices, so
            // the ROM word is a constant from the start of synthesis
            wire [ROM_BITS-1:0]  word;
            wire [IN_BITS-1:0]   a0;
            wire [IN1_BITS-1:0]  a1;
            if (REUSE == 1) begin : g_fixed
                assign word = rom[b];
                assign a0   = src0[b*IN_BITS +: IN_BITS];
                assign a1   = src1[b*IN1_BITS +: IN1_BITS];
            end else begin : g_mux
                wire [31:0] ch = b * REUSE + 32'(q);
                assign word = rom[ch];
                assign a0   = src0[ch*IN_BITS +: IN_BITS];
                assign a1   = src1[ch*IN1_BITS +: IN1_BITS];
            end
            wire signed [SUM_BITS-1:0] x0 = extend(64'(a0), IN_BITS, IN_SIGNED);
            wire signed [SUM_BITS-1:0] x1 = extend(64'(a1), IN1_BITS, IN1_SIGNED);
            wire signed [SUM_BITS-1:0] bias = extend(64'(word[BIAS_BITS-1:0]), BIAS_BITS, 1);
            wire signed [SUM_BITS-1:0] v = bias + const_mult(x0, word, 0)
                                         + ((N_INPUTS > 1) ? const_mult(x1, word, N_INPUTS - 1) : {SUM_BITS{1'b0}});
            // arithmetic shift: floor division by 2^SHIFT, so adding half first rounds half up
            wire signed [SUM_BITS-1:0] vq = (v + RND) >>> SHIFT;
            wire signed [CMP_BITS-1:0] qc = CMP_BITS'(vq);
            // after the clip only the low OUT_BITS bits carry information (LO <= y <= HI)
            /* verilator lint_off UNUSEDSIGNAL */
            wire signed [CMP_BITS-1:0] y = (qc < LO_C) ? LO_C : ((qc > HI_C) ? HI_C : qc);
            /* verilator lint_on UNUSEDSIGNAL */
            assign ylanes[b*OUT_BITS +: OUT_BITS] = y[OUT_BITS-1:0];
        end
        for (c = 0; c < C; c = c + 1) begin : g_out
            // channel c is lane c / REUSE's result in cycle c % REUSE (datapath: no reset)
            always @(posedge clk) begin
                if (step && q == QW'(c % REUSE)) m_data[c*OUT_BITS +: OUT_BITS] <= ylanes[(c / REUSE)*OUT_BITS +: OUT_BITS];
            end
        end
    endgenerate
endmodule
