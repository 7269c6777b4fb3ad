"""Scoring a CSV file with a trained model: ``predict``.

A file is read as blocks of whole lines (``reading``), its columns matched to the model's input schema by name
(as the endpoint matches named columns), scored (``offline``: the job's model in this process, through the
serving hooks; ``remote``: the live endpoint, in batches), and written with a header, an id column and a
``prediction`` column (``writing``), into a temporary file renamed over the output only when every row is done
(``predict``, the loop). Memory stays bounded by the block size whatever the file's size.

The SageMaker backend's Batch Transform is ``pipeline.backends.sagemaker.batch_transform``: the same reading and
writing around a transform job.
"""
