"""Board side of the build (PC): the AXI accelerator wrapper, Vivado overlay generation, packaging."""
