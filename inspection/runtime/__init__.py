"""Line-station runtime: OpenVINO Inspector. Torch-free by contract (tested)."""
