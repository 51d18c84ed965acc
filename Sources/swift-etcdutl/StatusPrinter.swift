import EtcdServer
import Foundation

/// `snapshot status` output in etcdutl's formats (etcd 3.6: with the storage version).
enum StatusPrinter {
    static func format(_ status: BackupFile.Status, as format: OutputFormat) -> String {
        let header = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"]
        let row = [String(status.hash, radix: 16), "\(status.revision)", "\(status.totalKey)", humanBytes(status.totalSize), status.version]
        switch format {
        case .simple:
            return row.joined(separator: ", ") + "\n"
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return String(decoding: (try? encoder.encode(status)) ?? Data(), as: UTF8.self) + "\n"
        case .fields:
            return """
                "Hash" : \(status.hash)
                "Revision" : \(status.revision)
                "Keys" : \(status.totalKey)
                "Size" : \(status.totalSize)
                "Version" : \(status.version)

                """
        case .table:
            return table(header: header, rows: [row])
        }
    }

    /// A table as etcdctl draws one: headers centred, cells right-aligned, one space of padding.
    static func table(header: [String], rows: [[String]]) -> String {
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+\n"
        func line(_ cells: [String], _ align: (String, Int) -> String) -> String {
            "|" + zip(cells, widths).map { " \(align($0, $1)) " }.joined(separator: "|") + "|\n"
        }
        let centred: (String, Int) -> String = { text, width in
            let left = (width - text.count) / 2
            return String(repeating: " ", count: left) + text + String(repeating: " ", count: width - text.count - left)
        }
        let right: (String, Int) -> String = { text, width in String(repeating: " ", count: width - text.count) + text }
        return rule + line(header, centred) + rule + rows.map { line($0, right) }.joined() + rule
    }

    /// Bytes as etcd prints them (go-humanize's SI form): `20 kB`, `2.1 MB`.
    static func humanBytes(_ bytes: Int64) -> String {
        guard bytes >= 10 else { return "\(bytes) B" }
        let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
        let exponent = min(Int(floor(log(Double(bytes)) / log(1000))), units.count - 1)
        let value = (Double(bytes) / pow(1000, Double(exponent)) * 10 + 0.5).rounded(.down) / 10
        return String(format: value < 10 ? "%.1f %@" : "%.0f %@", value, units[exponent])
    }
}

/// A progress bar on standard error while a large backup is verified and copied, shown only
/// when standard error is a terminal.
final class ProgressBar {
    private let enabled = isatty(STDERR_FILENO) == 1
    private var lastPercent = -1
    private var lastPhase = ""

    /// Smaller files finish before a bar would help.
    static let minimumBytes: Int64 = 64 << 20

    func show(_ phase: String, _ done: Int64, _ total: Int64) {
        guard enabled, total >= Self.minimumBytes else { return }
        let percent = Int(done * 100 / max(total, 1))
        guard percent != lastPercent || phase != lastPhase else { return }
        if phase != lastPhase && !lastPhase.isEmpty { FileHandle.standardError.write(Data("\n".utf8)) }
        (lastPercent, lastPhase) = (percent, phase)
        let filled = percent * 40 / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: 40 - filled)
        let line = "\r\(phase) [\(bar)] \(percent)% \(StatusPrinter.humanBytes(done))/\(StatusPrinter.humanBytes(total))"
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if lastPercent >= 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
