/*
 * OHIF v3 configuration for Orthanc-RT: Orthanc's DICOMweb is the only data source.
 * Served by orthanc_rt/ops/viewer.py in place of the app-config.js OHIF ships; that
 * server also passes /dicom-web and /wado through to Orthanc, so the viewer and
 * its data share one origin (no CORS set-up in Orthanc).
 *
 * It also carries a small OHIF extension, loaded at run time (OHIF takes extension
 * objects, not only the names of those built in): a hanging protocol that opens a
 * study holding a CT and an RTDOSE with the CT in a volume viewport, the dose fused
 * over it as a colour wash (OHIF's "Isodose" colour map, transparent where there is
 * no dose) with its colour bar in Gy, and the structure set's contours on top. When
 * the study holds several RT doses, the newest one Orthanc-RT made is fused (the
 * others stay in the series list, and in the viewport's overlay menu). Studies
 * without a CT and a dose keep OHIF's own default protocol.
 */
(function () {
  const PROTOCOL_ID = '@orthanc-rt/ct-dose-fusion';
  const ORTHANC_RT = 'Orthanc-RT'; // Manufacturer (0008,0070) of what Orthanc-RT writes
  const DOSE_OPACITY = 0.9; // as OHIF applies it: 0.9 still lets the CT show through (see the screenshots)
  const DOSE_CUTOFF = 0.02; // fraction of the dose's maximum below which the wash is transparent

  // The dose fused by default: an absolute dose in Gy (not a dose check's difference, DoseType ERROR, nor
  // its gamma map, DoseUnits RELATIVE) before anything else, Orthanc-RT's own before another system's,
  // then the newest.
  function doseRank(displaySet) {
    const instance = displaySet.instance || displaySet.images?.[0] || {};
    const absolute = instance.DoseUnits === 'GY' && instance.DoseType !== 'ERROR' ? '1' : '0';
    const ours = instance.Manufacturer === ORTHANC_RT ? '1' : '0';
    const when = `${displaySet.SeriesDate || instance.SeriesDate || ''}${displaySet.SeriesTime || instance.SeriesTime || ''}`;
    return `${absolute}${ours}|${when.padEnd(21, '0')}|${displaySet.SeriesInstanceUID}`;
  }

  // A study this protocol applies to: it holds a CT that makes a volume and an RT dose.
  function hasCtAndDose(study, options) {
    const displaySets = (options?.displaySets || []).filter(
      ds => ds.StudyInstanceUID === study?.StudyInstanceUID && !ds.unsupported);
    return displaySets.some(ds => ds.Modality === 'CT' && ds.isReconstructable) &&
      displaySets.some(ds => ds.Modality === 'RTDOSE');
  }

  function preferredDose(displaySets) {
    const doses = (displaySets || []).filter(ds => ds.Modality === 'RTDOSE' && !ds.unsupported);
    return doses.reduce((a, b) => (a && doseRank(a) >= doseRank(b) ? a : b), undefined);
  }

  function isPreferredDose(displaySet, options) {
    return displaySet.Modality === 'RTDOSE' &&
      preferredDose(options?.displaySets)?.displaySetInstanceUID === displaySet.displaySetInstanceUID;
  }

  // Of several CTs, one in the preferred dose's frame of reference (the dose is drawn in patient coordinates).
  function isInDoseFrame(displaySet, options) {
    const dose = preferredDose(options?.displaySets);
    return Boolean(dose?.FrameOfReferenceUID) && displaySet.FrameOfReferenceUID === dose.FrameOfReferenceUID;
  }

  // Dose values are in Gy (OHIF applies DoseGridScaling). The wash spans 0 .. the dose's maximum:
  // Orthanc-RT stores its maximum as 4e9 x DoseGridScaling; for another system's dose the largest
  // value its pixels can hold is taken (its colour bar then shows the range the grid can hold).
  function doseMaximumGy(displaySets) {
    const dose = displaySets.find(ds => ds.Modality === 'RTDOSE');
    const instance = dose?.instance || dose?.images?.[0];
    const scaling = Number(instance?.DoseGridScaling);
    if (!instance || !(scaling > 0)) {
      return undefined;
    }
    const levels = instance.Manufacturer === ORTHANC_RT ? 4e9 : 2 ** Number(instance.BitsStored || 32) - 1;
    return scaling * levels;
  }

  const fusionViewport = {
    viewportOptions: {
      viewportId: 'orthanc-rt-fusion',
      viewportType: 'volume',
      orientation: 'axial',
      toolGroupId: 'default',
      initialImageOptions: { preset: 'middle' },
    },
    displaySets: [
      { id: 'ctDisplaySet' },
      {
        id: 'doseDisplaySet',
        options: {
          voi: { custom: 'orthancRtDoseVoi' },
          colormap: { name: 'Isodose', opacity: { custom: 'orthancRtDoseOpacity' } },
        },
      },
      { id: 'rtstructDisplaySet' },
    ],
  };

  const protocol = {
    id: PROTOCOL_ID,
    name: 'CT with RT dose and structures (Orthanc-RT)',
    description: 'The CT with the newest RT dose fused as a colour wash and the structure set contours',
    protocolMatchingRules: [
      { attribute: 'orthancRtCtAndDose', constraint: { equals: { value: true } }, required: true, weight: 10 },
    ],
    toolGroupIds: ['default'],
    numberOfPriorsReferenced: 0,
    defaultViewport: {
      viewportOptions: { viewportType: 'stack', toolGroupId: 'default', allowUnmatchedView: true },
      displaySets: [{ id: 'ctDisplaySet', matchedDisplaySetsIndex: -1 }],
    },
    displaySetSelectors: {
      ctDisplaySet: {
        seriesMatchingRules: [
          { attribute: 'Modality', constraint: { equals: { value: 'CT' } }, required: true },
          { attribute: 'isReconstructable', constraint: { equals: { value: true } }, required: true },
          { attribute: 'orthancRtInDoseFrame', constraint: { equals: { value: true } }, weight: 5 },
          { attribute: 'numImageFrames', constraint: { greaterThan: { value: 1 } }, weight: 1 },
        ],
      },
      doseDisplaySet: {
        seriesMatchingRules: [
          { attribute: 'Modality', constraint: { equals: { value: 'RTDOSE' } }, required: true },
          { attribute: 'orthancRtPreferredDose', constraint: { equals: { value: true } }, weight: 10 },
        ],
      },
      rtstructDisplaySet: {
        seriesMatchingRules: [
          { attribute: 'Modality', constraint: { equals: { value: 'RTSTRUCT' } }, required: true },
        ],
      },
    },
    stages: [
      {
        name: 'CT with the dose fused',
        viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: 1 } },
        viewports: [fusionViewport],
        stageActivation: { enabled: { minViewportsMatched: 1 } },
      },
    ],
  };

  const extension = {
    id: '@orthanc-rt/extension-rt-fusion',
    preRegistration({ servicesManager }) {
      const { hangingProtocolService } = servicesManager.services;
      hangingProtocolService.addCustomAttribute('orthancRtCtAndDose', 'Holds a CT volume and an RT dose',
        hasCtAndDose);
      hangingProtocolService.addCustomAttribute('orthancRtInDoseFrame', 'In the frame of reference of the dose',
        isInDoseFrame);
      hangingProtocolService.addCustomAttribute('orthancRtPreferredDose',
        'The newest RT dose Orthanc-RT made (else the newest RT dose)', isPreferredDose);
      hangingProtocolService.addCustomAttribute('orthancRtDoseVoi', 'RT dose range in Gy', displaySets => {
        const max = doseMaximumGy(displaySets);
        // OHIF turns a window into a range the DICOM way (C - 0.5 -+ (W - 1) / 2): this one is 0 .. max.
        return max ? { windowWidth: max + 1, windowCenter: (max + 1) / 2 } : undefined;
      });
      hangingProtocolService.addCustomAttribute('orthancRtDoseOpacity', 'RT dose wash opacity', displaySets => {
        const max = doseMaximumGy(displaySets) || 1;
        return [
          { value: 0, opacity: 0 },
          { value: DOSE_CUTOFF * max, opacity: 0 },
          { value: DOSE_CUTOFF * max * 1.0001, opacity: DOSE_OPACITY },
          { value: max, opacity: DOSE_OPACITY },
        ];
      });
    },
    getHangingProtocolModule() {
      return [{ name: PROTOCOL_ID, protocol }];
    },
    // The dose's colour bar (its ticks in Gy) beside the fused viewport, once the dose volume is in it.
    onModeEnter({ servicesManager }) {
      const { cornerstoneViewportService: viewports, viewportGridService, displaySetService, colorbarService,
        customizationService } = servicesManager.services;
      const showDoseColorbar = ({ viewportId } = {}, tries = 0) => {
        const id = viewportId || fusionViewport.viewportOptions.viewportId;
        if (id !== fusionViewport.viewportOptions.viewportId || colorbarService.hasColorbar(id)) {
          return;
        }
        const dose = viewportGridService.getDisplaySetsUIDsForViewport(id)
          ?.map(uid => displaySetService.getDisplaySetByUID(uid)).find(ds => ds?.Modality === 'RTDOSE');
        if (!dose) {
          return;
        }
        // The colour bar reads the dose's range once, when it is made: wait for the dose volume's voxels.
        const viewport = viewports.getCornerstoneViewport(id);
        const volumeId = viewport && colorbarService.getDataIdForViewport(viewport, dose.displaySetInstanceUID);
        let loaded = false;
        try {
          loaded = viewport.getImageData(volumeId).voxelManager.getRange()[1] > 0;
        } catch (e) {
          loaded = false;
        }
        if (!loaded) {
          if ((tries || 0) < 60) {
            setTimeout(() => showDoseColorbar({ viewportId: id }, (tries || 0) + 1), 1000);
          }
          return;
        }
        const settings = customizationService.getCustomization('cornerstone.colorbar') || {};
        colorbarService.addColorbar(id, [dose.displaySetInstanceUID], {
          colormaps: settings.colormaps || {}, activeColormapName: 'Isodose', position: 'right',
          ticks: { position: 'left', style: { ...(settings.tickStyles || {}), labelMargin: 5 } },
          width: '15px',
        });
      };
      const subscriptions = [viewports.EVENTS.VIEWPORT_DATA_CHANGED, viewports.EVENTS.VIEWPORT_VOLUMES_CHANGED]
        .filter(Boolean).map(event => viewports.subscribe(event, (data = {}) => {
          setTimeout(() => showDoseColorbar(data), 500);  // the actors are added after the event
        }));
      this._unsubscribe = () => subscriptions.forEach(s => s.unsubscribe());
    },
    onModeExit() {
      this._unsubscribe?.();
    },
  };

  window.config = {
    routerBasename: '/',
    showStudyList: true,
    extensions: [extension],
    modes: [],
    // The basic viewer tries the fusion protocol first; it matches only a study with a CT and an RTDOSE.
    modesConfiguration: {
      '@ohif/mode-longitudinal': { hangingProtocol: { $set: [PROTOCOL_ID, 'default'] } },
    },
    customizationService: {},
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: 'never' },
    defaultDataSourceName: 'orthanc',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'orthanc',
        configuration: {
          friendlyName: 'Orthanc-RT',
          name: 'orthanc',
          qidoRoot: '/dicom-web',
          wadoRoot: '/dicom-web',
          wadoUriRoot: '/wado',
          qidoSupportsIncludeField: false,
          supportsReject: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          staticWado: false,
          dicomUploadEnabled: true,
          singlepart: 'bulkdata,video,pdf',
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
})();
