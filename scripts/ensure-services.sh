#!/usr/bin/env bash
# Make sure Debian's Orthanc (+ DICOMweb plugin) and dicom3tools (dciodvfy) are there for the PACS
# tests, and Debian's postgresql for the database tests (tests/postgres.py starts a throw-away server);
# install them when we can. Never fails: without them those tests skip and say how to enable them.
if command -v Orthanc >/dev/null 2>&1 && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
   && command -v dciodvfy >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
pkgs="orthanc orthanc-dicomweb dicom3tools postgresql"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's $pkgs for the PACS tests…"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq $pkgs) \
    >/tmp/medui-orthanc.log 2>&1 \
    || echo "Could not install $pkgs (see /tmp/medui-orthanc.log); PACS/PostgreSQL tests will be skipped."
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
  (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs) \
    >/tmp/medui-orthanc.log 2>&1 || echo "Could not install $pkgs; PACS/PostgreSQL tests will be skipped."
else
  echo "Orthanc/dicom3tools/postgresql not found and cannot be installed here; PACS/PostgreSQL tests will be skipped" \
       "(install them: apt-get install $pkgs)."
fi
exit 0
