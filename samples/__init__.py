"""The sample models, shipped in the wheel as ``dlir.samples`` so that ``dlirc doctor`` can run them anywhere."""
