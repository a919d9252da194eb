# One image for Orthanc-with-plugin and for workers (different commands).
# It is built by the same installer CI runs (scripts/install.sh).
FROM debian:bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/orthanc-rt
COPY requirements.txt requirements-dev.txt pyproject.toml README.md orthanc-rt ./
COPY scripts/ scripts/
RUN bash scripts/install.sh && rm -rf /var/lib/apt/lists/* /root/.cache/pip
COPY orthanc_rt/ orthanc_rt/
COPY plugin/ plugin/
COPY worker/ worker/
COPY orthanc_config/ orthanc_config/
# The editable install above registered the project folder; re-run to pick up the sources.
RUN bash scripts/install.sh

ENV ORTHANC_RT_DATA_DIR=/var/lib/orthanc-rt \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/orthanc-rt"]
EXPOSE 8042 4242

# `./orthanc-rt run orthanc` or `./orthanc-rt run worker`
ENTRYPOINT ["./orthanc-rt"]
CMD ["run", "orthanc"]
