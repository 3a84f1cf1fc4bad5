"""The KServe v2 / Open Inference Protocol, so Triton and KServe clients call iMOS Serve unchanged."""
