/*
 * Orthanc-RT panels in Orthanc Explorer (injected with orthanc.ExtendOrthancExplorer).
 * Study page: the study's Orthanc-RT jobs with live progress.
 * Instance page of an RT Ion Plan: a button to compute its dose with MCsquare.
 * Everything goes through the plugin's own REST routes (../rt/...).
 */
(function () {
  var RT_ION_PLAN = '1.2.840.10008.5.1.4.1.1.481.8';
  var RT_DOSE = '1.2.840.10008.5.1.4.1.1.481.2';
  var METRICS = ['volume_cc', 'Dmin', 'Dmean', 'Dmax', 'D98', 'D95', 'D50', 'D2'];
  var pollTimer = null;

  function esc(text) {
    return $('<div>').text(text === undefined || text === null ? '' : String(text)).html();
  }

  function jobLine(job) {
    var pct = Math.round(100 * (job.progress || 0));
    var eta = job.eta_seconds ? ', ETA ' + Math.round(job.eta_seconds) + ' s' : '';
    var out = job.outputs || {};
    var dose = out.rtdose ? ' · <a href="#instance?uuid=' + esc(out.rtdose.orthanc_id) + '">RTDOSE</a>' +
      ' · max ' + esc(out.dose_max_gy) + ' Gy' : '';
    var msg = job.message ? '<br><small>' + esc(job.message) + '</small>' : '';
    return '<li data-rt-job="' + esc(job.id) + '"><a href="../rt/jobs/' + esc(job.id) + '" target="_blank">' +
      '<b>' + esc(job.kind) + '</b> ' + esc(job.state) + ' — ' + esc(job.stage) + ' ' + pct + ' %' + eta + '</a>' +
      '<p>' + esc(job.id) + dose + msg + '</p></li>';
  }

  function renderJobs(list, studyId) {
    $.ajax({ url: '../rt/jobs', data: { study: studyId, limit: 50 }, dataType: 'json', cache: false })
      .done(function (answer) {
        list.empty();
        list.append('<li data-role="list-divider">Orthanc-RT jobs (' + answer.total + ')</li>');
        if (answer.items.length === 0) {
          list.append('<li>No Orthanc-RT job for this study yet.</li>');
        }
        $.each(answer.items, function (_, job) { list.append(jobLine(job)); });
        list.listview('refresh');
        var active = answer.items.some(function (j) {
          return j.state === 'queued' || j.state === 'running' || j.state === 'waiting-for-input';
        });
        clearTimeout(pollTimer);
        if (active) {
          pollTimer = setTimeout(function () { renderJobs(list, studyId); }, 2000);
        }
      })
      .fail(function (xhr) {
        list.empty().append('<li>Orthanc-RT unavailable: ' + esc(xhr.status) + '</li>').listview('refresh');
      });
  }

  $('#study').live('pagebeforeshow', function () {
    var studyId = $.mobile.pageData && $.mobile.pageData.uuid;
    $('#orthanc-rt-study, #orthanc-rt-ohif').remove();
    if (!studyId) { return; }
    var list = $('<ul id="orthanc-rt-study" data-role="listview" data-inset="true"></ul>');
    list.insertAfter($('#study-info'));
    list.listview();
    renderJobs(list, studyId);
    showMeasurementSummary(studyId, list);
    var viewer = window.ORTHANC_RT && window.ORTHANC_RT.viewerUrl;
    if (viewer) {
      $.getJSON('../studies/' + studyId, function (study) {
        var uid = study.MainDicomTags.StudyInstanceUID;
        var link = $('<a id="orthanc-rt-ohif" data-role="button" data-icon="search" target="_blank">Open in OHIF</a>')
          .attr('href', viewer + '/viewer?StudyInstanceUIDs=' + encodeURIComponent(uid));
        $('#orthanc-rt-ohif').remove();
        link.insertAfter(list).button();
      });
    }
  });

  $('#study').live('pagehide', function () { clearTimeout(pollTimer); });

  // A study's measurements: per dose and ROI its DVH metrics (GET /rt/studies/{id}/measurements/summary),
  // then how many measurements came from OHIF reports (SR) and from manual entry.
  var SUMMARY_METRICS = ['volume', 'Dmean', 'D95', 'Dmax'];  // the side column is narrow: the full set is on the dose

  function showMeasurementSummary(studyId, after) {
    $('#orthanc-rt-measurements').remove();
    var box = $('<div id="orthanc-rt-measurements" class="ui-body ui-body-c"><h3>Orthanc-RT: measurements</h3>' +
      '<table style="width:100%;font-size:small"></table><p id="orthanc-rt-measurement-counts"></p></div>');
    box.insertAfter(after);
    var table = box.find('table');
    $.ajax({ url: '../rt/studies/' + studyId + '/measurements/summary', dataType: 'json', cache: false })
      .done(function (answer) {
        if (answer.rois.length === 0) {
          table.replaceWith('<p>No dose of this study has been analysed yet.</p>');
          return;
        }
        var units = answer.rois[0].units;
        table.append('<tr><th>ROI</th>' + SUMMARY_METRICS.map(function (k) {
          return '<th>' + esc(k) + (units[k] ? ' (' + esc(units[k]) + ')' : '') + '</th>';
        }).join('') + '</tr>');
        var dose = null;
        $.each(answer.rois, function (_, line) {
          if (line.dose_sop_instance_uid !== dose) {  // rows come grouped by dose
            dose = line.dose_sop_instance_uid;
            table.append('<tr><td colspan="' + (SUMMARY_METRICS.length + 1) + '" title="' + esc(dose) + '">' +
              '<i>RTDOSE …' + esc(String(dose).slice(-12)) + '</i></td></tr>');
          }
          table.append('<tr data-rt-roi="' + esc(line.roi_name) + '"><td>' + esc(line.roi_name) + '</td>' +
            SUMMARY_METRICS.map(function (k) {
              var v = line.metrics[k];
              return '<td>' + (v === undefined || v === null ? '' : esc(Number(v).toFixed(2))) + '</td>';
            }).join('') + '</tr>');
        });
      })
      .fail(function (xhr) {
        table.replaceWith('<p>Measurement summary unavailable: ' + esc(xhr.status) + '</p>');
      });
    var counts = {};
    $.each(['sr', 'manual'], function (_, source) {
      $.ajax({ url: '../rt/measurements', data: { study: studyId, source: source, limit: 1 }, dataType: 'json',
               cache: false })
        .done(function (answer) {
          counts[source] = answer.total;
          if (counts.sr === undefined || counts.manual === undefined) { return; }
          $('#orthanc-rt-measurement-counts').html('From OHIF reports (SR): <a target="_blank" ' +
            'href="../rt/measurements?study=' + encodeURIComponent(studyId) + '&source=sr">' + esc(counts.sr) +
            '</a> · manual: <a target="_blank" href="../rt/measurements?study=' + encodeURIComponent(studyId) +
            '&source=manual">' + esc(counts.manual) + '</a>');
        });
    });
  }

  $('#instance').live('pagebeforeshow', function () {
    var instanceId = $.mobile.pageData && $.mobile.pageData.uuid;
    $('#orthanc-rt-instance').remove();
    if (!instanceId) { return; }
    $.ajax({ url: '../instances/' + instanceId + '/metadata/SopClassUid', dataType: 'text', cache: false })
      .done(function (sopClass) {
        if ($.trim(sopClass) === RT_DOSE) { showDose(instanceId); return; }
        if ($.trim(sopClass) !== RT_ION_PLAN) { return; }
        var box = $('<div id="orthanc-rt-instance" class="ui-body ui-body-c">' +
          '<h3>Orthanc-RT: proton dose (MCsquare)</h3>' +
          '<label>Primaries <input id="orthanc-rt-primaries" type="number" value="1000000" min="1000"></label>' +
          '<label>Scoring grid (mm, empty: CT grid) <input id="orthanc-rt-spacing" type="number" step="0.5"></label>' +
          '<a href="#" data-role="button" data-icon="gear" id="orthanc-rt-dose">Compute dose</a>' +
          '<p id="orthanc-rt-result"></p></div>');
        box.insertAfter($('#instance-info'));
        box.trigger('create');
        $('#orthanc-rt-dose').click(function (e) {
          e.preventDefault();
          var body = { primaries: parseInt($('#orthanc-rt-primaries').val(), 10) };
          var spacing = $('#orthanc-rt-spacing').val();
          if (spacing) { body.scoring_spacing_mm = parseFloat(spacing); }
          $.ajax({ url: '../rt/instances/' + instanceId + '/dose', type: 'POST', data: JSON.stringify(body),
                   contentType: 'application/json', dataType: 'json' })
            .done(function (answer) {
              $('#orthanc-rt-result').html((answer.created ? 'Job queued: ' : 'Already requested: ') +
                '<a href="../rt/jobs/' + esc(answer.job.id) + '" target="_blank">' + esc(answer.job.id) +
                '</a> (' + esc(answer.job.state) + ')');
            })
            .fail(function (xhr) {
              var text = xhr.responseJSON ? xhr.responseJSON.error : xhr.statusText;
              $('#orthanc-rt-result').text('Refused: ' + text);
            });
        });
      });
  });

  // An RTDOSE: the dose overlay (plane, slice, window), the DVH and the per-ROI metrics.
  function showDose(instanceId) {
    var base = '../rt/doses/' + instanceId;
    var box = $('<div id="orthanc-rt-instance" class="ui-body ui-body-c"><h3>Orthanc-RT: dose</h3>' +
      '<select id="orthanc-rt-plane"><option>axial</option><option>coronal</option><option>sagittal</option></select>' +
      '<select id="orthanc-rt-window"><option value="soft-tissue">soft tissue</option><option value="lung">lung</option>' +
      '<option value="bone">bone</option></select>' +
      '<input id="orthanc-rt-slice" type="number" min="0" placeholder="slice (default: through the maximum)">' +
      '<img id="orthanc-rt-overlay" style="width:100%" alt="dose overlay">' +
      '<img id="orthanc-rt-dvh" style="width:100%" alt="DVH">' +
      '<table id="orthanc-rt-metrics" style="width:100%;font-size:small"></table></div>');
    box.insertAfter($('#instance-info'));
    box.trigger('create');
    function refresh() {
      var params = { plane: $('#orthanc-rt-plane').val(), window: $('#orthanc-rt-window').val() };
      if ($('#orthanc-rt-slice').val() !== '') { params.slice = $('#orthanc-rt-slice').val(); }
      $('#orthanc-rt-overlay').attr('src', base + '/overlay.png?' + $.param(params));
    }
    box.find('select, input').change(refresh);
    refresh();
    $('#orthanc-rt-dvh').attr('src', base + '/dvh.png').on('error', function () { $(this).remove(); });
    $.getJSON('../rt/measurements', { dose: instanceId, source: 'dvh', limit: 500 }, function (answer) {
      var rois = {};
      $.each(answer.items, function (_, m) {
        rois[m.roi_name] = rois[m.roi_name] || {};
        rois[m.roi_name][m.metric] = m.value;
      });
      var table = $('#orthanc-rt-metrics');
      table.append('<tr><th>ROI</th>' + METRICS.map(function (k) { return '<th>' + esc(k) + '</th>'; }).join('') + '</tr>');
      $.each(rois, function (name, values) {
        table.append('<tr><td>' + esc(name) + '</td>' + METRICS.map(function (k) {
          return '<td>' + (values[k] === undefined ? '' : esc(Number(values[k]).toFixed(2))) + '</td>';
        }).join('') + '</tr>');
      });
    });
  }
})();
