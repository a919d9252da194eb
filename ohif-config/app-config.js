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
    // One dose job with an RBE model writes its physical and RBE-weighted doses within a second or two (SeriesTime
    // has whole seconds): the RBE-weighted one (DoseType EFFECTIVE, the one prescribed) is then the one fused.
    const effective = instance.DoseType === 'EFFECTIVE' ? '1' : '0';
    return `${absolute}${ours}|${when.padEnd(21, '0')}|${effective}|${displaySet.SeriesInstanceUID}`;
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


  // ---- The Orthanc-RT panel: the open study's jobs, plans, the DVH of the dose on screen, the measurements ----
  // Its data come from Orthanc-RT's own routes (/rt/...), which the viewer passes through to Orthanc with the
  // browser's login like /dicom-web: the same roles as the REST routes (a refusal is shown, as Orthanc-RT words it).
  // OHIF renders a panel as a React component, and the prebuilt OHIF does not hand React to extensions loaded at
  // run time (no window.React). The component therefore returns one plain <div> element (a React 18 element
  // object: OHIF 3.12.10 bundles React 18.3.1) whose ref callback draws the panel with the DOM.
  const PANEL_ID = '@orthanc-rt/extension-rt-fusion.panelModule.orthancRtResults';
  const REACT_ELEMENT = Symbol.for('react.element');
  const ACTIVE = ['queued', 'running', 'waiting-for-input'];
  const SUMMARY_METRICS = ['volume', 'Dmean', 'D95', 'D2', 'Dmax'];
  const panelState = { node: null, timer: null, services: null, dose: undefined, unsubscribe: null };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => (k === 'style' ? (node.style.cssText = v) : node.setAttribute(k, v)));
    children.flat().forEach(c => node.append(c instanceof Node ? c : document.createTextNode(c ?? '')));
    return node;
  }

  // GET an /rt route of the viewer's origin; a refusal or failure becomes an Error carrying Orthanc-RT's message.
  async function rtGet(path, params) {
    const query = params ? `?${new URLSearchParams(params)}` : '';
    const answer = await fetch(`/rt/${path}${query}`, { credentials: 'same-origin', cache: 'no-store' });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      const error = new Error(`${answer.status}: ${body.error || answer.statusText || 'no answer'}`);
      error.status = answer.status;
      throw error;
    }
    return body;
  }

  function fixed(value, digits) {
    return typeof value === 'number' ? value.toFixed(digits) : String(value ?? '');
  }

  // The open study and the RT dose on screen (in the active viewport, else the one the protocol fuses).
  function studyOnScreen(services) {
    const { displaySetService, viewportGridService } = services;
    const shown = displaySetService.getActiveDisplaySets() || [];
    const state = viewportGridService.getState?.() || {};
    const active = state.activeViewportId || fusionViewport.viewportOptions.viewportId;
    const inViewport = (viewportGridService.getDisplaySetsUIDsForViewport(active) || [])
      .map(uid => displaySetService.getDisplaySetByUID(uid)).find(ds => ds?.Modality === 'RTDOSE');
    const dose = inViewport || preferredDose(shown);
    const instance = dose?.instance || dose?.images?.[0];
    return { study: shown[0]?.StudyInstanceUID || studyInUrl(), dose: instance?.SOPInstanceUID };
  }

  // The study the viewer was opened with (/viewer?StudyInstanceUIDs=...): known before (or without) its series.
  function studyInUrl() {
    return new URLSearchParams(window.location.search).get('StudyInstanceUIDs')?.split(',')[0] || undefined;
  }

  // Orthanc refuses a user without an Orthanc-RT role the study's DICOMweb as well: OHIF then keeps its loading
  // screen over the whole viewer. Orthanc-RT's refusal is shown as a notification, which stays above it.
  async function noticeRefusal(services) {
    const study = studyInUrl();
    if (!study) {
      return;
    }
    try {
      await rtGet('jobs', { study, limit: 1 });
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        services.uiNotificationService?.show({ title: 'Orthanc-RT', message: `Orthanc-RT refused: ${error.message}`,
          type: 'error', duration: 60000 });
      }
    }
  }

  function section(title, id) {
    return el('section', { 'data-rt-section': id, style: 'margin:0 0 12px 0' },
      el('h3', { style: 'font-weight:600;color:#5acce6;margin:4px 0' }, title), el('div', { 'data-rt-body': id }));
  }

  function fill(id, ...content) {
    const body = panelState.node?.querySelector(`[data-rt-body="${id}"]`);
    if (body) {
      body.replaceChildren(...content);
    }
  }

  function refused(id, error) {
    fill(id, el('p', { 'data-rt-error': String(error.status || ''), style: 'color:#f59e0b' },
      `Orthanc-RT refused or failed: ${error.message}`));
  }

  async function showJobs(study) {
    try {
      const answer = await rtGet('jobs', { study, limit: 50 });
      const rows = answer.items.map(job => el('li', { 'data-rt-job': job.id, 'data-rt-state': job.state },
        el('b', {}, job.kind), ` ${job.state} \u2014 ${job.stage || ''} ${Math.round(100 * (job.progress || 0))} %`,
        job.eta_seconds ? `, ETA ${Math.round(job.eta_seconds)} s` : '',
        job.message ? el('div', { style: 'opacity:0.7' }, job.message) : ''));
      fill('jobs', rows.length ? el('ul', {}, rows) : el('p', {}, 'No Orthanc-RT job for this study yet.'));
      return answer.items.some(job => ACTIVE.includes(job.state));
    } catch (error) {
      refused('jobs', error);
      return false;
    }
  }

  async function showPlans(study) {
    try {
      const answer = await rtGet('plans', { study, limit: 20 });
      const rows = answer.items.map(plan => {
        const target = plan.qa?.target || {};
        const qa = Object.entries(target).filter(([, v]) => typeof v === 'number')
          .map(([k, v]) => `${k} ${fixed(v, k.startsWith('V') ? 1 : 3)}${k.startsWith('V') ? ' %' : ' Gy'}`);
        return el('li', { 'data-rt-plan': plan.id },
          el('b', {}, plan.workflow), ` ${plan.target_roi} ${plan.request?.prescription_gy ?? ''} Gy: ${plan.status}`,
          qa.length ? el('div', { 'data-rt-qa': plan.id }, qa.join(', ')) : '');
      });
      // Only the plans Orthanc-RT made: an RTPLAN another system exported is a series of the study, and its dose
      // and check are jobs above; saying "no plan" next to it in the series list would read as a contradiction.
      fill('plans', rows.length ? el('ul', {}, rows)
        : el('p', {}, 'Orthanc-RT has planned nothing in this study. Plans from other systems are in the series list; their doses and checks are listed under jobs.'));
      return answer.items.some(plan => ACTIVE.includes(plan.status));
    } catch (error) {
      refused('plans', error);
      return false;
    }
  }

  function showDvh(dose) {
    if (!dose) {
      fill('dvh', el('p', {}, 'No RT dose on screen.'));
      return;
    }
    const image = el('img', { 'data-rt-dvh': dose, alt: 'DVH of the dose on screen', style: 'width:100%;background:#fff' });
    image.addEventListener('error', () => fill('dvh', el('p', {}, 'No DVH for this dose (not analysed yet).')));
    image.src = `/rt/doses/${encodeURIComponent(dose)}/dvh.png`;
    fill('dvh', image);
  }

  async function showMeasurements(study, dose) {
    try {
      const [summary, sr, manual] = await Promise.all([
        rtGet(`studies/${encodeURIComponent(study)}/measurements/summary`),
        rtGet('measurements', { study, source: 'sr', limit: 1 }),
        rtGet('measurements', { study, source: 'manual', limit: 1 })]);
      const lines = summary.rois.filter(line => !dose || line.dose_sop_instance_uid === dose);
      const units = lines[0]?.units || {};
      const head = el('tr', {}, el('th', {}, 'ROI'),
        SUMMARY_METRICS.map(k => el('th', {}, units[k] ? `${k} (${units[k]})` : k)));
      const rows = lines.map(line => el('tr', { 'data-rt-roi': line.roi_name }, el('td', {}, line.roi_name),
        SUMMARY_METRICS.map(k => el('td', {}, fixed(line.metrics[k], 2)))));
      fill('measurements',
        lines.length ? el('table', { style: 'width:100%;text-align:right' }, head, rows)
          : el('p', {}, 'No analysis of this dose yet.'),
        el('p', { 'data-rt-counts': '' }, `From OHIF reports (SR): ${sr.total} \u00b7 manual: ${manual.total}`));
    } catch (error) {
      refused('measurements', error);
    }
  }

  async function refreshPanel() {
    clearTimeout(panelState.timer);
    const services = panelState.services;
    if (!panelState.node || !services) {
      return;
    }
    const { study, dose } = studyOnScreen(services);
    if (!study) {
      panelState.timer = setTimeout(refreshPanel, 1000);  // the study's series are still arriving
      return;
    }
    if (dose !== panelState.dose) {
      panelState.dose = dose;
      showDvh(dose);
    }
    const [jobsActive, plansActive] = await Promise.all([showJobs(study), showPlans(study)]);
    await showMeasurements(study, dose);
    if (panelState.node && (jobsActive || plansActive)) {
      panelState.timer = setTimeout(() => {
        panelState.dose = undefined;  // a running analysis may bring the DVH
        refreshPanel();
      }, 2000);
    }
  }

  function mountPanel(node) {
    clearTimeout(panelState.timer);
    panelState.unsubscribe?.();
    panelState.node = node;
    panelState.dose = undefined;
    if (!node) {
      return;
    }
    node.replaceChildren(
      section('Orthanc-RT jobs', 'jobs'), section('Plans made by Orthanc-RT', 'plans'),
      section('DVH of the dose on screen', 'dvh'), section('Measurements', 'measurements'),
      el('button', { 'data-rt-refresh': '', style: 'text-decoration:underline' }, 'Refresh'));
    node.querySelector('[data-rt-refresh]').addEventListener('click', () => {
      panelState.dose = undefined;
      refreshPanel();
    });
    const { viewportGridService, displaySetService } = panelState.services;
    const events = [[viewportGridService, viewportGridService.EVENTS?.ACTIVE_VIEWPORT_ID_CHANGED],
      [viewportGridService, viewportGridService.EVENTS?.GRID_STATE_CHANGED],
      [displaySetService, displaySetService.EVENTS?.DISPLAY_SETS_ADDED]];
    const subscriptions = events.filter(([, event]) => event)
      .map(([service, event]) => service.subscribe(event, () => setTimeout(refreshPanel, 200)));
    panelState.unsubscribe = () => subscriptions.forEach(s => s.unsubscribe());
    refreshPanel();
  }

  function OrthancRtPanel() {
    return {
      $$typeof: REACT_ELEMENT, type: 'div', key: null, ref: mountPanel, _owner: null, _store: {},
      props: { 'data-cy': 'orthanc-rt-panel', className: 'text-primary-light overflow-auto p-2 text-sm' },
    };
  }

  // ---- The LETd map (issue #16): Orthanc-RT's Parametric Map over the CT, one click from the fused dose ----
  // OHIF's own PMAP viewport cannot show it: its loader (cornerstone-dicom-pmap) copies the map into a volume on the
  // CT's grid and refuses a map on another grid (ours is on the dose grid), ignores the Real World Value Mapping
  // (our pixels are 16-bit with a slope in keV/um) and multiplies the stored integers by 100 in a 16-bit array
  // (they wrap). So the extension reads the map itself (the file by WADO-RS, the geometry from its metadata),
  // makes a cornerstone volume in keV/um on the map's own grid and fuses it in the viewport in place of the dose,
  // the way the dose grid itself is fused.
  const LET_UNIT = 'keV/\u00b5m';
  const LET_COLORMAP = 'Orthanc-RT LETd';
  const LET_OPACITY = 0.9;
  const LET_SCALE_PERCENTILE = 0.99;
  // Blue (low LETd) to red (high): every colour away from the CT's grey; 0 keV/um (no dose there) is transparent.
  const LET_RGB = [0, 0, 0, 1, 0.25, 0, 1, 1, 0.5, 0, 1, 0, 0.75, 1, 1, 0, 1, 1, 0, 0];
  const LET_LOADS = new Map();  // volume id -> promise of { volumeId, max }

  function first(value) {
    return Array.isArray(value) ? value[0] : value;
  }

  // The newest Parametric Map Orthanc-RT wrote (OHIF names the modality of its display set PMAP).
  function newestLetMap(displaySets) {
    const rank = ds => `${ds.SeriesDate || ''}${ds.SeriesTime || ds.instance?.SeriesTime || ''}|${ds.SeriesInstanceUID}`;
    return (displaySets || []).filter(ds => ds.Modality === 'PMAP' && ds.instance?.Manufacturer === ORTHANC_RT)
      .reduce((a, b) => (a && rank(a) >= rank(b) ? a : b), undefined);
  }

  // The map's stored pixels: an uncompressed 16-bit Pixel Data element (explicit VR little endian, as Orthanc-RT
  // writes it) ends the file; its header is checked, so another encoding is refused rather than misread.
  function letPixels(buffer, count) {
    const bytes = 2 * count;
    const start = buffer.byteLength - bytes;
    const header = start >= 12 && new DataView(buffer, start - 12, 12);
    const tag = header && header.getUint16(0, true) === 0x7fe0 && header.getUint16(2, true) === 0x0010;
    if (!tag || header.getUint32(8, true) !== bytes) {
      throw new Error('LETd map: no uncompressed 16-bit Pixel Data at the end of the file');
    }
    return new Uint16Array(buffer.slice(start));
  }

  // The bytes of a multipart answer's (only) part up to the closing delimiter (\r\n--boundary).
  function partEnd(buffer, boundary) {
    if (!boundary) {
      return buffer;
    }
    const bytes = new Uint8Array(buffer);
    const delimiter = Array.from(`\r\n--${boundary}`, c => c.charCodeAt(0));
    for (let end = bytes.length - delimiter.length; end >= 0; end--) {
      if (delimiter.every((c, k) => bytes[end + k] === c)) {
        return buffer.slice(0, end);
      }
    }
    return buffer;
  }

  async function loadLetVolume(letMap) {
    const volumeId = `orthancRtLet:${letMap.SeriesInstanceUID}`;
    if (!LET_LOADS.has(volumeId)) {
      LET_LOADS.set(volumeId, (async () => {
        const instance = letMap.instance;
        // WADO-RS (as OHIF reads everything): the instance as one part of a multipart answer.
        const url = `/dicom-web/studies/${instance.StudyInstanceUID}/series/${instance.SeriesInstanceUID}`
          + `/instances/${instance.SOPInstanceUID}`;
        const answer = await fetch(url, { credentials: 'same-origin',
          headers: { Accept: 'multipart/related; type="application/dicom"' } });
        if (!answer.ok) {
          throw new Error(`LETd map: ${answer.status} ${answer.statusText} from ${url}`);
        }
        const boundary = /boundary="?([^";]+)"?/.exec(answer.headers.get('content-type') || '')?.[1];
        const body = await answer.arrayBuffer();
        const rows = Number(instance.Rows);
        const columns = Number(instance.Columns);
        const frames = (instance.PerFrameFunctionalGroupsSequence || []).map(
          (group, index) => ({ index, z: Number(first(group.PlanePositionSequence).ImagePositionPatient[2]),
            position: first(group.PlanePositionSequence).ImagePositionPatient.map(Number) }));
        const stored = letPixels(partEnd(body, boundary), rows * columns * frames.length);
        const shared = first(instance.SharedFunctionalGroupsSequence) || {};
        const perFrame = first(instance.PerFrameFunctionalGroupsSequence) || {};
        const mapping = first(shared.RealWorldValueMappingSequence || perFrame.RealWorldValueMappingSequence) || {};
        const slope = Number(mapping.RealWorldValueSlope ?? 1);
        const intercept = Number(mapping.RealWorldValueIntercept ?? 0);
        const spacing = first(shared.PixelMeasuresSequence || perFrame.PixelMeasuresSequence).PixelSpacing.map(Number);
        frames.sort((a, b) => a.z - b.z);  // cornerstone's volume runs along +z from its origin
        const slice = rows * columns;
        const values = new Float32Array(slice * frames.length);
        frames.forEach(({ index }, k) => {
          for (let i = 0; i < slice; i++) {
            values[k * slice + i] = stored[index * slice + i] * slope + intercept;
          }
        });
        // The colour scale ends at the 99th percentile of the map where it is not 0: the few voxels at the dose
        // threshold's fringe, where Monte Carlo LETd is noisy and high, would otherwise squeeze the beam's values
        // into the lowest colours. Higher values take the top colour (the bar says so).
        const inside = values.filter(v => v > 0).sort();
        const max = inside.length ? inside[Math.floor(LET_SCALE_PERCENTILE * (inside.length - 1))] : 1;
        const dz = frames.length > 1 ? (frames[frames.length - 1].z - frames[0].z) / (frames.length - 1) : 1;
        window.cornerstone.volumeLoader.createLocalVolume(volumeId, {
          scalarData: values, dimensions: [columns, rows, frames.length], spacing: [spacing[1], spacing[0], dz],
          origin: frames[0].position, direction: [1, 0, 0, 0, 1, 0, 0, 0, 1],
          metadata: { Modality: 'PMAP', SeriesInstanceUID: instance.SeriesInstanceUID, BitsAllocated: 32,
            BitsStored: 32, PixelRepresentation: 1, PhotometricInterpretation: 'MONOCHROME2',
            FrameOfReferenceUID: instance.FrameOfReferenceUID, voiLut: [{ windowCenter: max / 2, windowWidth: max }] },
        });
        return { volumeId, max };
      })());
    }
    return LET_LOADS.get(volumeId);
  }

  function letColormap() {
    const colormaps = window.cornerstone.utilities.colormap;
    if (!colormaps.getColormap(LET_COLORMAP)) {
      colormaps.registerColormap({ Name: LET_COLORMAP, name: LET_COLORMAP, ColorSpace: 'RGB', RGBPoints: LET_RGB });
    }
    return LET_COLORMAP;
  }

  // Its colour bar along the viewport's bottom (where the dose's is), 0 .. the scale's end, with its unit.
  function letColourBar(max) {
    const stops = [];
    for (let i = 0; i < LET_RGB.length; i += 4) {
      const [r, g, b] = LET_RGB.slice(i + 1, i + 4).map(c => Math.round(255 * c));
      stops.push(`rgb(${r},${g},${b}) ${100 * LET_RGB[i]}%`);
    }
    const tick = (value, where, prefix = '') => el('span', { style: `position:absolute;top:-18px;${where};`
      + 'color:#d0d0d0;font:12px Inter, sans-serif' }, `${prefix}${value.toFixed(1)}`);
    return el('div', { 'data-orthanc-rt-let-bar': max.toFixed(3), style: 'position:absolute;left:10%;right:12%;'
        + `bottom:14px;height:12px;z-index:1001;pointer-events:none;background:linear-gradient(to right,${stops})` },
      tick(0, 'left:0'), tick(max / 2, 'left:48%'), tick(max, 'right:0', '\u2265 '),
      el('span', { 'data-orthanc-rt-unit': LET_UNIT, title: 'Dose-averaged LET in keV/\u00b5m',
        style: 'position:absolute;right:-54px;top:-3px;color:#d0d0d0;font:13px Inter, sans-serif' }, LET_UNIT));
  }

  // A button in the fused viewport switches its foreground between the dose and the LETd map.
  function letToggle(viewport, letMap) {
    const pane = viewport.element?.parentElement;
    if (!pane || pane.querySelector('[data-orthanc-rt-let-toggle]')) {
      return;
    }
    const button = el('button', { 'data-orthanc-rt-let-toggle': 'dose', title: `Show ${letMap.SeriesDescription || 'the LETd map'}`,
      style: 'position:absolute;top:32px;left:50%;transform:translateX(-50%);z-index:1002;padding:2px 8px;'
        + 'border:1px solid #5acce6;border-radius:4px;background:#090c29;color:#5acce6;font:13px Inter, sans-serif' },
    `LETd (${LET_UNIT})`);
    ['pointerdown', 'mousedown', 'mouseup', 'wheel'].forEach(type => button.addEventListener(type, e => e.stopPropagation()));
    button.addEventListener('click', async () => {
      const showLet = button.getAttribute('data-orthanc-rt-let-toggle') === 'dose';
      button.disabled = true;
      try {
        const { volumeId, max } = await loadLetVolume(letMap);
        if (showLet && !viewport.getActors().some(a => a.referencedId === volumeId)) {
          await viewport.addVolumes([{ volumeId }]);
          // A volume made in memory has no frames streaming in: its texture takes all of them now.
          window.cornerstone.cache.getVolume(volumeId).invalidate();
          viewport.setProperties({
            voiRange: { lower: 0, upper: max },
            colormap: { name: letColormap(), opacity: [{ value: 0, opacity: 0 }, { value: 1e-3 * max, opacity: 0 },
              { value: 1.0001e-3 * max, opacity: LET_OPACITY }, { value: max, opacity: LET_OPACITY }] },
          }, volumeId);
        }
        viewport.getActors().forEach(a => {
          const modality = window.cornerstone.cache.getVolume(a.referencedId)?.metadata?.Modality;
          if (modality === 'RTDOSE' || a.referencedId === volumeId) {
            a.actor.setVisibility(a.referencedId === volumeId ? showLet : !showLet);
          }
        });
        viewport.render();
        document.querySelectorAll(`[id^="colorbar-container-${viewport.id}-"]`)
          .forEach(bar => (bar.style.visibility = showLet ? 'hidden' : ''));
        pane.querySelector('[data-orthanc-rt-let-bar]')?.remove();
        if (showLet) {
          pane.appendChild(letColourBar(max));
        }
        button.setAttribute('data-orthanc-rt-let-toggle', showLet ? 'let' : 'dose');
        button.textContent = showLet ? 'Dose' : `LETd (${LET_UNIT})`;
      } catch (error) {
        console.error('Orthanc-RT LETd map:', error);
        panelState.services?.uiNotificationService?.show({ title: 'Orthanc-RT', type: 'error',
          message: `The LETd map could not be shown: ${error.message}` });
      } finally {
        button.disabled = false;
      }
    });
    if (getComputedStyle(pane).position === 'static') {
      pane.style.position = 'relative';
    }
    pane.appendChild(button);
  }

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
    getPanelModule({ servicesManager }) {
      panelState.services = servicesManager.services;
      return [{ name: 'orthancRtResults', iconName: 'ListView', iconLabel: 'Orthanc-RT', label: 'Orthanc-RT',
        component: OrthancRtPanel }];
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
        labelDoseUnit(`colorbar-container-${id}-${dose.displaySetInstanceUID}`, dose);
        offerLetMap(id);
      };
      // Cornerstone's colour bar prints bare numbers (and only under the mouse): its unit stays beside it. OHIF
      // renders the bar's container (id colorbar-container-<viewport>-<display set>) after the service's event.
      const labelDoseUnit = (containerId, dose, tries = 0) => {
        const container = document.getElementById(containerId);
        if (!container) {
          if (tries < 20) {
            setTimeout(() => labelDoseUnit(containerId, dose, tries + 1), 250);
          }
          return;
        }
        if (!container.querySelector('[data-orthanc-rt-unit]')) {
          // An RBE-weighted dose (DoseType EFFECTIVE) is in Gy (RBE), ICRU 78's notation for it.
          const instance = dose.instance || dose.images?.[0] || {};
          const unit = instance.DoseType === 'EFFECTIVE' ? 'Gy (RBE)' : 'Gy';
          container.appendChild(el('span', {
            'data-orthanc-rt-unit': unit, 'data-orthanc-rt-series': dose.SeriesInstanceUID || '',
            title: unit === 'Gy' ? 'Dose in Gy' : 'RBE-weighted dose in Gy (RBE)',
            // Above the bar's right end: beside it are OHIF's own buttons, and the bar's canvas covers its container.
            style: 'position: absolute; right: -26px; top: -20px; z-index: 1001; color: #d0d0d0; '
              + 'font: 13px Inter, sans-serif; pointer-events: none; white-space: nowrap',
          }, unit));
        }
      };
      const offerLetMap = viewportId => {
        const letMap = newestLetMap(displaySetService.getActiveDisplaySets());
        const viewport = viewports.getCornerstoneViewport(viewportId);
        if (letMap && viewport) {
          letToggle(viewport, letMap);
        }
      };
      const subscriptions = [viewports.EVENTS.VIEWPORT_DATA_CHANGED, viewports.EVENTS.VIEWPORT_VOLUMES_CHANGED]
        .filter(Boolean).map(event => viewports.subscribe(event, (data = {}) => {
          setTimeout(() => showDoseColorbar(data), 500);  // the actors are added after the event
        }));
      this._unsubscribe = () => subscriptions.forEach(s => s.unsubscribe());
      noticeRefusal(servicesManager.services);
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
      '@ohif/mode-longitudinal': {
        hangingProtocol: { $set: [PROTOCOL_ID, 'default'] },
        // The Orthanc-RT panel beside OHIF's segmentation and measurement panels (the right side's third tab).
        routes: { 0: { layoutInstance: { props: { rightPanels: { $push: [PANEL_ID] } } } } },
      },
    },
    // No first-visit guided tour: it covers the toolbar and the viewport of the study a physicist came to see
    // from a link (Orthanc Explorer, a job's result); OHIF's own documentation is a click away in its menu.
    customizationService: { 'ohif.tours': { $set: [] } },
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
