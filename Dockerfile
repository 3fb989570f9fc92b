# One image, two roles (deploy/ and docs/DEPLOY.md):
#  - the SDK container of the Dataflow workers (ENTRYPOINT: Beam's boot), with the code,
#    its pinned dependencies and the embedded geolocation database preinstalled;
#  - the Flex Template launcher (the launcher binary and FLEX_TEMPLATE_PYTHON_PY_FILE),
#    so the job is submitted with exactly the dependencies it runs with.
# Built by `make template` (Cloud Build; no local Docker needed). The Beam and Python
# versions must match pyproject.toml's pin: a test checks them.
# The launcher comes from a release tag of Google's Flex Template base images (listed on
# their reference page), never :latest, so a rebuild gets the launcher it was tested
# with; move it deliberately (LAUNCHER_IMAGE=... at build time to try another).
ARG LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20240628_RC00
FROM ${LAUNCHER_IMAGE} AS launcher

FROM apache/beam_python3.11_sdk:2.77.0
COPY --from=launcher /opt/google/dataflow/python_template_launcher \
     /opt/google/dataflow/python_template_launcher

WORKDIR /template
COPY pyproject.toml setup.py README.md ./
COPY beam_pipelines beam_pipelines
COPY configs configs
COPY generators generators
COPY schemas schemas
COPY transforms transforms
COPY sql sql

# The worker dependencies of pyproject.toml (no local extra: the launcher needs none of
# it either, a test shows), checked for conflicts, then the database that is
# installed without its (unused, conflicting) declared dependency.
RUN pip install --no-cache-dir . \
 && pip check \
 && pip install --no-cache-dir --no-deps $(python setup.py --no-deps-pins)

ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/beam_pipelines/ops/flex_template.py
# Arrow's pool for the workers' batches (beam_pipelines/allocator.py says why).
ENV ARROW_DEFAULT_MEMORY_POOL=jemalloc
# Everything is installed: workers must not resolve anything at start-up.
ENV PIP_NO_DEPS=True
ENTRYPOINT ["/opt/apache/beam/boot"]
