"""Image I/O: read photos, alpha mattes and trimaps into p3m's conventions; write PNGs atomically.

Images are RGB uint8 H x W x 3, alpha mattes float32 H x W in [0, 1], trimaps uint8 in
{0, 128, 255}. See `p3m.io.images` for the mode and channel rules.
"""

from __future__ import annotations

from p3m.io.atomic import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    output_folder,
    remove_stale_temporaries,
    temporary_path,
    temporary_target,
)
from p3m.io.files import (
    IMAGE_SUFFIXES,
    OUTPUT_FOLDER_MARKER,
    VIDEO_SUFFIXES,
    expand_folders,
    files_by_stem,
    is_image_file,
    is_video_file,
    mark_output_folder,
    output_folder_kind,
)
from p3m.io.images import (
    DEFAULT_MAX_PIXELS,
    TRIMAP_VALUES,
    alpha_to_uint8,
    encode_png,
    first_frame_note,
    image_pixel_cap,
    image_size,
    load_image_and_alpha,
    load_image_input,
    output_file_problem,
    pixel_count_text,
    read_alpha,
    read_alpha_u8,
    read_image,
    read_image_and_alpha,
    read_trimap,
    snap_trimap,
    write_alpha,
    write_image,
    write_png,
    write_rgba,
)
from p3m.io.lists import read_path_list

__all__ = [
    "output_folder",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "OUTPUT_FOLDER_MARKER",
    "VIDEO_SUFFIXES",
    "expand_folders",
    "is_video_file",
    "TRIMAP_VALUES",
    "alpha_to_uint8",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "encode_png",
    "first_frame_note",
    "files_by_stem",
    "image_pixel_cap",
    "is_image_file",
    "load_image_and_alpha",
    "mark_output_folder",
    "output_folder_kind",
    "output_file_problem",
    "load_image_input",
    "pixel_count_text",
    "read_alpha",
    "read_alpha_u8",
    "image_size",
    "read_image",
    "read_image_and_alpha",
    "read_path_list",
    "read_trimap",
    "remove_stale_temporaries",
    "snap_trimap",
    "temporary_path",
    "temporary_target",
    "write_alpha",
    "write_image",
    "write_png",
    "write_rgba",
]
