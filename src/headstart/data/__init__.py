"""Finding, splitting and decoding the user's labeled images, and the embedded ELPV default."""

from .elpv import default_data_home, materialise_elpv
from .images import IMAGE_EXTENSIONS, decode_images, load_rgb
from .sources import DataSplits, Sample, load_image_data, read_manifest, scan_image_folder, stratified_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataSplits",
    "Sample",
    "decode_images",
    "default_data_home",
    "load_image_data",
    "load_rgb",
    "materialise_elpv",
    "read_manifest",
    "scan_image_folder",
    "stratified_split",
]
