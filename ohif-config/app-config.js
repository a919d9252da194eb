/*
 * OHIF v3 configuration: Orthanc (through its DICOMweb plugin) is the only data source.
 * Serve the viewer and Orthanc from one origin (a reverse proxy mapping /dicom-web
 * to Orthanc), or set the URLs below to Orthanc's address and enable CORS there.
 * How the viewer is served is tracked in the viewing issue; this file is its configuration.
 */
window.config = {
  routerBasename: '/',
  showStudyList: true,
  extensions: [],
  modes: [],
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
        singlepart: 'bulkdata,video,pdf',
        // Orthanc's DICOMweb 1.7 answers bulk data with full URIs; let OHIF use them as given.
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
