"""The MONAI Label server protocol, so 3D Slicer's stock MONAI Label module (and MONAILabelClient) propagate
one painted slice through a volume with iMOS. See gateway/rest/monai_label.py for the routes."""
