# One image for Orthanc-with-plugin and for workers (different commands).
# Built by the same installer the README and CI use (scripts/install.sh), nothing by hand.
# Without a Docker engine or a registry: scripts/container-image.sh (podman, debootstrap base).
FROM debian:bookworm

WORKDIR /opt/orthanc-rt
# First only what the installer reads (Debian packages, pinned requirements, the OHIF version):
# this layer, the long one, stays cached while the sources, pyproject.toml and the docs change.
COPY requirements.txt ./
COPY ohif-config/VERSION ohif-config/VERSION
COPY scripts/install.sh scripts/fix_opentps.py scripts/
# Where HTTPS goes through an inspecting proxy, pass the site's CA bundle as the build secret `site-ca`
# (`--secret id=site-ca,src=/etc/ssl/certs/ca-certificates.crt`; scripts/container-image.sh passes the
# host's): pip and npm trust it while building, and the image does not keep it. npm only fetched OHIF.
RUN --mount=type=secret,id=site-ca \
    if [ -s /run/secrets/site-ca ]; then export PIP_CERT=/run/secrets/site-ca NODE_EXTRA_CA_CERTS=/run/secrets/site-ca; fi \
 && bash scripts/install.sh \
 && apt-get purge -y -qq --auto-remove npm >/dev/null \
 && rm -rf /var/lib/apt/lists/* /root/.cache/pip /root/.npm

COPY orthanc-rt pyproject.toml README.md ./
COPY orthanc_config/ orthanc_config/
COPY ohif-config/ ohif-config/
COPY scripts/ scripts/
COPY orthanc_rt/ orthanc_rt/
COPY plugin/ plugin/
COPY worker/ worker/
# Now the installer adds the project itself (editable); what the first run did is skipped.
RUN --mount=type=secret,id=site-ca \
    if [ -s /run/secrets/site-ca ]; then export PIP_CERT=/run/secrets/site-ca; fi \
 && bash scripts/install.sh && rm -rf /root/.cache/pip

ENV ORTHANC_RT_DATA_DIR=/var/lib/orthanc-rt \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/orthanc-rt"]
EXPOSE 8042 4242 3000

# `./orthanc-rt run orthanc` or `./orthanc-rt run worker`
ENTRYPOINT ["./orthanc-rt"]
CMD ["run", "orthanc"]
