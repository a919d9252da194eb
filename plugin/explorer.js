/*
 * Orthanc-RT panels in Orthanc Explorer (injected with orthanc.ExtendOrthancExplorer).
 * Study page: the study's Orthanc-RT jobs with live progress, its dose checks (verdict, report), its plans and
 * a form to request one.
 * Instance page of an RT Ion Plan: its dose checks and a button to compute its dose with MCsquare.
 * Instance page of an RTDOSE: overlay, DVH, metrics, and a button to check it against a recompute of its plan.
 * Everything goes through the plugin's own REST routes (../rt/...).
 */
(function () {
  var RT_ION_PLAN = '1.2.840.10008.5.1.4.1.1.481.8';
  var RT_DOSE = '1.2.840.10008.5.1.4.1.1.481.2';
  var METRICS = ['volume', 'Dmin', 'Dmean', 'Dmax', 'D98', 'D95', 'D50', 'D2'];
  var pollTimer = null;

  function esc(text) {
    return $('<div>').text(text === undefined || text === null ? '' : String(text)).html();
  }

  function jobLine(job) {
    var pct = Math.round(100 * (job.progress || 0));
    var eta = job.eta_seconds ? ', ETA ' + Math.round(job.eta_seconds) + ' s' : '';
    var out = job.outputs || {};
    var dose = out.rtdose ? ' · <a href="#instance?uuid=' + esc(out.rtdose.orthanc_id) + '">RTDOSE</a>' +
      (out.dose_max_gy !== undefined ? ' · max ' + esc(out.dose_max_gy) + ' Gy' : '') : '';
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

  // The study's plans: status, target coverage, links to the stored RTPLAN and RTDOSE.
  function planLine(plan) {
    var job = plan.job || {};
    var pct = Math.round(100 * (job.progress || 0));
    var qa = plan.qa && plan.qa.target ? ' · D95 ' + esc(plan.qa.target.D95 && plan.qa.target.D95.toFixed(3)) +
      ' Gy, D2 ' + esc(plan.qa.target.D2 && plan.qa.target.D2.toFixed(3)) + ' Gy' : '';
    var links = ['rtplan', 'rtdose'].filter(function (k) { return plan.results[k]; }).map(function (k) {
      return '<a href="#instance?uuid=' + esc(plan.results[k].orthanc_id) + '">' + k.toUpperCase() + '</a>';
    }).join(' · ');
    var status = plan.status === 'running' ? 'running — ' + esc(job.stage) + ' ' + pct + ' %' : esc(plan.status);
    return '<li data-rt-plan="' + esc(plan.id) + '"><a href="../rt/plans/' + esc(plan.id) + '" target="_blank">' +
      '<b>' + esc(plan.workflow) + '</b> ' + esc(plan.target_roi) + ' ' + esc(plan.request.prescription_gy) +
      ' Gy: ' + status + '</a><p>' + esc(plan.source) + qa + (links ? ' · ' + links : '') +
      (job.message ? '<br><small>' + esc(job.message) + '</small>' : '') + '</p></li>';
  }

  function renderPlans(list, studyId) {
    $.ajax({ url: '../rt/plans', data: { study: studyId, limit: 20 }, dataType: 'json', cache: false })
      .done(function (answer) {
        list.empty().append('<li data-role="list-divider">Plans made by Orthanc-RT (' + answer.total + ')</li>');
        // Another system's RTPLAN is a series of the study (its recompute and check are jobs): "no plan" beside it
        // would read as a contradiction.
        if (answer.items.length === 0) {
          list.append('<li>Orthanc-RT has planned nothing in this study. Plans from other systems are among its ' +
                      'series; their doses and checks are listed under jobs.</li>');
        }
        $.each(answer.items, function (_, plan) { list.append(planLine(plan)); });
        list.listview('refresh');
        if (answer.items.some(function (p) { return ['queued', 'running', 'waiting-for-input'].indexOf(p.status) >= 0; })) {
          setTimeout(function () { if ($('#orthanc-rt-plans').length) { renderPlans(list, studyId); } }, 3000);
        }
      });
  }

  // A plan request: workflow, target ROI from the study's structure sets, prescription, fractions, beams.
  function planForm(studyId, plansList, onRequested) {
    var box = $('<div id="orthanc-rt-plan-form" class="ui-body ui-body-c"><h3>Orthanc-RT: request a plan</h3>' +
      '<label>Workflow <select id="orthanc-rt-workflow"></select></label>' +
      '<label>Target ROI <select id="orthanc-rt-target"></select></label>' +
      '<label>Prescription (Gy, all fractions) <input id="orthanc-rt-rx" type="number" step="0.1" value="2"></label>' +
      '<label>Fractions <input id="orthanc-rt-fractions" type="number" min="1" value="1"></label>' +
      '<label>Beams (evenly spaced) <input id="orthanc-rt-beams" type="number" min="1" max="9" value="2"></label>' +
      '<a href="#" data-role="button" data-icon="gear" id="orthanc-rt-plan">Request plan</a>' +
      '<p id="orthanc-rt-plan-result"></p></div>');
    box.insertAfter(plansList);
    $.getJSON('../rt/workflows', function (answer) {
      $.each(answer.workflows, function (_, w) {
        if (w.submit_to !== 'POST /rt/plans') { return; }
        var option = $('<option>').val(w.id).text(w.title + (w.status.available ? '' : ' (unavailable)'));
        if (!w.status.available) { option.attr('disabled', 'disabled').attr('title', w.status.reason); }
        $('#orthanc-rt-workflow').append(option);
      });
      $('#orthanc-rt-workflow').selectmenu('refresh');
    });
    $.getJSON('../rt/studies/' + studyId + '/structure-sets', function (answer) {
      $.each(answer.structure_sets, function (_, ss) {
        $.each(ss.rois, function (_, roi) {
          if (!roi.contours) { return; }
          $('#orthanc-rt-target').append($('<option>').val(JSON.stringify([ss.orthanc_id, roi.name]))
            .text(roi.name + ' — ' + (ss.label || ss.sop_instance_uid)));
        });
      });
      $('#orthanc-rt-target').selectmenu('refresh');
    });
    box.trigger('create');
    $('#orthanc-rt-plan').click(function (e) {
      e.preventDefault();
      var target = $('#orthanc-rt-target').val();
      if (!target) { $('#orthanc-rt-plan-result').text('This study has no structure set with a contoured ROI.'); return; }
      target = JSON.parse(target);
      var body = { study: studyId, structure_set: target[0], target_roi: target[1],
                   workflow: $('#orthanc-rt-workflow').val(),
                   prescription_gy: parseFloat($('#orthanc-rt-rx').val()),
                   fractions: parseInt($('#orthanc-rt-fractions').val(), 10),
                   beam_count: parseInt($('#orthanc-rt-beams').val(), 10) };
      $.ajax({ url: '../rt/plans', type: 'POST', data: JSON.stringify(body), contentType: 'application/json',
               dataType: 'json' })
        .done(function (plan, _, xhr) {
          $('#orthanc-rt-plan-result').html((xhr.status === 201 ? 'Plan requested: ' : 'Already requested: ') +
            '<a href="../rt/plans/' + esc(plan.id) + '" target="_blank">' + esc(plan.id) + '</a> (' +
            esc(plan.status) + ')');
          renderPlans(plansList, studyId);
          onRequested();
        })
        .fail(function (xhr) {
          $('#orthanc-rt-plan-result').text('Refused: ' + (xhr.responseJSON ? xhr.responseJSON.error : xhr.statusText));
        });
    });
  }

  // Dose checks (GET /rt/checks): the verdict coloured, the pass rate, the median ratio and the PDF report.
  var VERDICT_COLOURS = { pass: '#1a7f37', warn: '#b35900', fail: '#c62828' };

  function checkLine(check) {
    var colour = VERDICT_COLOURS[check.verdict] || '#555';
    var ratio = check.high_dose_ratio ? ' · median ratio ' + esc(Number(check.high_dose_ratio).toFixed(3)) : '';
    var report = check.report_orthanc_id ? ' · <a href="../rt/checks/' + esc(check.id) + '/report.pdf" ' +
      'target="_blank" data-rt-report="' + esc(check.id) + '">report (PDF)</a>' : '';
    return '<li data-rt-check="' + esc(check.id) + '"><a href="../rt/checks/' + esc(check.id) + '" target="_blank">' +
      '<b style="color:' + colour + '" data-rt-verdict="' + esc(check.verdict) + '">' +
      esc(String(check.verdict).toUpperCase()) + '</b> gamma ' + esc(check.criteria) + ': ' +
      esc(Number(check.pass_rate_percent).toFixed(1)) + ' %</a><p>' + esc(check.mode) + ratio + report +
      '<br><small>' + esc(check.reason) + '</small></p></li>';
  }

  function renderChecks(list, query, title) {
    $.ajax({ url: '../rt/checks', data: $.extend({ limit: 20 }, query), dataType: 'json', cache: false })
      .done(function (answer) {
        list.empty().append('<li data-role="list-divider">' + esc(title) + ' (' + answer.total + ')</li>');
        if (answer.items.length === 0) { list.append('<li>No dose check yet.</li>'); }
        $.each(answer.items, function (_, check) { list.append(checkLine(check)); });
        list.listview('refresh');
      });
  }

  // A plan's robustness evaluations: per evaluation, its goals x worst case (pass/fail) and links to the
  // minimum and maximum RTDOSEs and the DVH bands. A plain box, not a listview: the links stay links.
  function robustnessBlock(instanceId, job) {
    var out = job.outputs || {};
    var head = '<a href="../rt/jobs/' + esc(job.id) + '" target="_blank">' + esc(job.id) + '</a> · ' + esc(job.state);
    if (job.state !== 'succeeded') {
      return '<div data-rt-robustness="' + esc(job.id) + '"><p>' + head + (job.message ? '<br><small>' +
        esc(job.message) + '</small>' : '') + '</p></div>';
    }
    var links = ['rtdose-min', 'rtdose-max'].filter(function (k) { return out[k]; }).map(function (k) {
      return '<a href="#instance?uuid=' + esc(out[k].orthanc_id) + '">' + (k === 'rtdose-min' ? 'min' : 'max') +
        ' dose</a>';
    });
    var bands = '../rt/instances/' + instanceId + '/robustness/' + job.id + '/dvh-bands';
    links.push('<a href="' + bands + '.png" target="_blank">DVH bands</a>', '<a href="' + bands +
      '" target="_blank">(JSON)</a>');
    var rows = (out.goals || []).map(function (g) {
      var colour = g.passed ? '#1a7f37' : '#c62828';
      return '<tr><td>' + esc(g.goal) + '<br><small>nominal ' + esc(Number(g.nominal).toFixed(2)) +
        '</small></td><td>' + esc(Number(g.worst).toFixed(2)) + '<br><small>' + esc(g.worst_scenario) +
        '</small></td><td style="color:' + colour + '" data-rt-goal-passed="' + esc(g.passed) + '"><b>' +
        (g.passed ? 'PASS' : 'FAIL') + '</b></td></tr>';
    }).join('');
    return '<div data-rt-robustness="' + esc(job.id) + '"><p>' + head + ' · ' +
      esc((out.scenarios || []).length) + ' scenarios, goals from ' + esc(out.goals_from) + '<br>' +
      links.join(' · ') + '</p><table style="width:100%;font-size:12px;border-collapse:collapse">' +
      '<tr><th align="left">goal</th><th align="left">worst case</th><th></th></tr>' + rows + '</table></div>';
  }

  function renderRobustness(box, instanceId, studyId) {
    $.ajax({ url: '../rt/jobs', data: { kind: 'robustness', study: studyId, limit: 20 }, dataType: 'json',
             cache: false })
      .done(function (answer) {
        var mine = answer.items.filter(function (j) {
          return j.inputs.plan && j.inputs.plan.orthanc_id === instanceId;
        });
        box.empty().append('<h3>Robustness evaluations of this plan (' + mine.length + ')</h3>');
        if (mine.length === 0) { box.append('<p>No robustness evaluation yet.</p>'); }
        $.each(mine, function (_, job) { box.append(robustnessBlock(instanceId, job)); });
        if (mine.some(function (j) { return ['queued', 'running'].indexOf(j.state) >= 0; })) {
          setTimeout(function () {
            if ($('#orthanc-rt-robustness').length) { renderRobustness(box, instanceId, studyId); }
          }, 3000);
        }
      });
  }

  $('#study').live('pagebeforeshow', function () {
    var studyId = $.mobile.pageData && $.mobile.pageData.uuid;
    $('#orthanc-rt-study, #orthanc-rt-ohif, #orthanc-rt-plans, #orthanc-rt-plan-form, #orthanc-rt-checks').remove();
    if (!studyId) { return; }
    var list = $('<ul id="orthanc-rt-study" data-role="listview" data-inset="true"></ul>');
    list.insertAfter($('#study-info'));
    list.listview();
    renderJobs(list, studyId);
    var checksList = $('<ul id="orthanc-rt-checks" data-role="listview" data-inset="true"></ul>');
    checksList.insertAfter(list);
    checksList.listview();
    renderChecks(checksList, { study: studyId }, 'Orthanc-RT dose checks');
    showMeasurementSummary(studyId, checksList);
    var plansList = $('<ul id="orthanc-rt-plans" data-role="listview" data-inset="true"></ul>');
    plansList.insertAfter($('#orthanc-rt-measurements'));
    plansList.listview();
    renderPlans(plansList, studyId);
    planForm(studyId, plansList, function () { renderJobs(list, studyId); });
    var viewer = window.ORTHANC_RT && window.ORTHANC_RT.viewerUrl;
    if (viewer) {
      $.getJSON('../studies/' + studyId, function (study) {
        var uid = study.MainDicomTags.StudyInstanceUID;
        var link = $('<a id="orthanc-rt-ohif" data-role="button" data-icon="search" target="_blank">Open in OHIF</a>')
          .attr('href', viewer + '/viewer?StudyInstanceUIDs=' + encodeURIComponent(uid));
        $('#orthanc-rt-ohif').remove();
        link.insertBefore(list).button();
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
    $('#orthanc-rt-instance, #orthanc-rt-plan-checks, #orthanc-rt-robustness').remove();
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
          '<label>Setup error (mm) <input id="orthanc-rt-setup" type="number" value="3" min="0" max="10" step="0.5">' +
          '</label><label>Range error (%) <input id="orthanc-rt-range" type="number" value="3.5" min="0" max="10" ' +
          'step="0.5"></label>' +
          '<a href="#" data-role="button" data-icon="gear" id="orthanc-rt-robust">Evaluate robustness (21 ' +
          'scenarios)</a>' +
          '<p id="orthanc-rt-result"></p></div>');
        box.insertAfter($('#instance-info'));
        box.trigger('create');
        $.getJSON('../instances/' + instanceId, function (instance) {
          var checks = $('<ul id="orthanc-rt-plan-checks" data-role="listview" data-inset="true"></ul>');
          checks.insertAfter(box);
          checks.listview();
          renderChecks(checks, { plan: instance.MainDicomTags.SOPInstanceUID }, 'Dose checks of this plan');
          var robust = $('<div id="orthanc-rt-robustness" class="ui-body ui-body-c"></div>');
          robust.insertAfter(checks);
          $.getJSON('../instances/' + instanceId + '/study', function (study) {
            renderRobustness(robust, instanceId, study.ID);
          });
        });
        $('#orthanc-rt-robust').click(function (e) {
          e.preventDefault();
          var body = { primaries: parseInt($('#orthanc-rt-primaries').val(), 10),
                       setup_error_mm: parseFloat($('#orthanc-rt-setup').val()),
                       range_error_pct: parseFloat($('#orthanc-rt-range').val()) };
          $.ajax({ url: '../rt/instances/' + instanceId + '/robustness', type: 'POST', data: JSON.stringify(body),
                   contentType: 'application/json', dataType: 'json' })
            .done(function (answer) {
              $('#orthanc-rt-result').html((answer.created ? 'Robustness evaluation queued: ' : 'Already requested: ') +
                '<a href="../rt/jobs/' + esc(answer.job.id) + '" target="_blank">' + esc(answer.job.id) +
                '</a> (' + esc(answer.job.state) + ', ' + esc(answer.scenarios.length) + ' scenarios)');
              var list = $('#orthanc-rt-robustness');
              if (list.length) { renderRobustness(list, instanceId, answer.job.orthanc_study_id); }
            })
            .fail(function (xhr) {
              var text = xhr.responseJSON ? xhr.responseJSON.error : xhr.statusText;
              $('#orthanc-rt-result').text('Refused: ' + text);
            });
        });
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
      '<table id="orthanc-rt-metrics" style="width:100%;font-size:small"></table>' +
      '<a href="#" data-role="button" data-icon="check" id="orthanc-rt-check">Check against a recompute of its ' +
      'plan (MCsquare, gamma 3 %/2 mm)</a><p id="orthanc-rt-check-result"></p></div>');
    box.insertAfter($('#instance-info'));
    box.trigger('create');
    $('#orthanc-rt-check').click(function (e) {
      e.preventDefault();
      $.ajax({ url: base + '/compare', type: 'POST', data: '{}', contentType: 'application/json', dataType: 'json' })
        .done(function (answer) {
          $('#orthanc-rt-check-result').html('Check ' + esc(answer.job.state) + ': <a href="../rt/checks/' +
            esc(answer.check_id) + '" target="_blank">' + esc(answer.check_id) + '</a>');
        })
        .fail(function (xhr) {
          $('#orthanc-rt-check-result').text('Refused: ' + (xhr.responseJSON ? xhr.responseJSON.error : xhr.statusText));
        });
    });
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
