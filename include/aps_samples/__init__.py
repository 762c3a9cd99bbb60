"""Sample data the project generates itself: valid IFC and OBJ files, bad files, mixed landing batches.

Everything is deterministic by seed, so demos and tests can say in advance what the pipeline must do:

    from aps_samples import sample_batch, put_sample_batch
    for key, data, metadata, expected in sample_batch(seed=1): ...
    put_sample_batch(S3Landing(s3_client, "landing"), "incoming", seed=1)   # any aps_landing.Landing
"""

from aps_samples.batch import (
    SIDECAR_SUFFIX,
    Expected,
    SampleFile,
    put_sample_batch,
    sample_batch,
    sample_metadata,
    user_metadata,
)
from aps_samples.bench import benchmark_files, ifc_of_size, obj_of_size, put_benchmark_files
from aps_samples.ifc import (
    IfcElement,
    IfcSample,
    compress_guid,
    generate_ifc,
    ifc_with_elements,
    is_global_id,
)
from aps_samples.obj import ObjSample, generate_obj

__all__ = [
    "SIDECAR_SUFFIX",
    "Expected",
    "IfcElement",
    "IfcSample",
    "ObjSample",
    "SampleFile",
    "benchmark_files",
    "compress_guid",
    "generate_ifc",
    "generate_obj",
    "ifc_of_size",
    "ifc_with_elements",
    "is_global_id",
    "obj_of_size",
    "put_benchmark_files",
    "put_sample_batch",
    "sample_batch",
    "sample_metadata",
    "user_metadata",
]
